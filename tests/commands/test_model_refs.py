"""A model argument that is given but does not resolve is an error naming what was tried, in every command, before
anything heavy loads; never a silent switch to the built-in model."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lesionlab.builtin.registry import ModelNotFoundError, resolve_model_ref
from lesionlab.cli import main
from lesionlab.commands.common import collect_images, split_model_argument


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "imgs" / "lesion.jpg"
    path.parent.mkdir()
    Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(path)
    return path


@pytest.mark.parametrize(("ref", "expected"), [
    ("runs/default-nosuch", "runs/ does not exist either"),
    ("ham7-lite3", "Did you mean 'ham7-lite2'"),
])
def test_unknown_model_ref_names_what_was_tried(ref: str, expected: str, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelNotFoundError) as err:
        resolve_model_ref(ref)
    message = str(err.value)
    assert repr(ref) in message and expected in message
    assert "ham7-lite2" in message  # the built-in names are listed


def test_close_sibling_folder_is_suggested(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "default-20261206-120000").mkdir(parents=True)
    with pytest.raises(ModelNotFoundError, match=r"Did you mean 'runs/default-20261206-120000'"):
        resolve_model_ref("runs/default-20261206-12000")


def test_leading_missing_path_is_read_as_the_model(image: Path) -> None:
    with pytest.raises(ModelNotFoundError):
        split_model_argument(None, ["runs/default-nosuch", str(image)])
    assert split_model_argument(None, [str(image)]) == (None, [str(image)])  # a lone image: the built-in model


@pytest.mark.parametrize("argv", [
    ["predict", "runs/default-nosuch", "IMG"],
    ["predict", "ham7-lite3", "IMG"],
    ["predict", "--model", "runs/default-nosuch", "IMG"],
    ["serve", "runs/default-nosuch"],
    ["card", "ham7-lite3"],
    ["evaluate", "runs/default-nosuch", "--dataset", "ph2"],
    ["explain", "runs/default-nosuch", "IMG"],
    ["calibrate", "runs/default-nosuch"],
    ["robustness", "runs/default-nosuch"],
    ["ood", "fit", "runs/default-nosuch"],
    ["ood", "eval", "runs/default-nosuch"],
    ["export", "runs/default-nosuch"],
    ["release", "runs/default-nosuch", "--name", "x", "--out", "rel", "--data-root", "."],
    ["attention-maps", "runs/default-nosuch", "IMG", "--out", "maps"],
    ["distill", "runs/default-nosuch"],
    ["transfer-report", "runs/default-nosuch", "--datasets", "test"],
])
def test_every_command_refuses_a_missing_model(argv: list[str], image: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert main([a.replace("IMG", str(image)) for a in argv]) == 2
    err = capsys.readouterr()
    assert "not found" in err.err and "built-in model" in err.err
    assert err.out == ""  # no prediction from another model


def test_missing_image_fails_before_the_model_loads(tmp_path: Path) -> None:
    """In a fresh interpreter: the error comes without importing PyTorch (a second, not the model's load time)."""
    code = ("import sys; from lesionlab.cli import main; rc = main(['predict', 'imgs/IMD999.jpg']); "
            "print(rc, 'torch' in sys.modules)")
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["2", "False"]
    assert "no such file or folder: imgs/IMD999.jpg" in out.stderr
    assert time.perf_counter() - t0 < 5


def test_folder_reports_files_that_are_not_images(image: Path) -> None:
    (image.parent / "notes.txt").write_text("notes")
    (image.parent / ".DS_Store").write_bytes(b"")
    paths, skipped = collect_images([str(image.parent)])
    assert paths == [image] and skipped == [image.parent / "notes.txt"]


@pytest.mark.slow
def test_predict_folder_gives_skipped_files_an_error_row(image: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (image.parent / "notes.txt").write_text("notes")
    assert main(["predict", str(image.parent), "--format", "json"]) == 1
    rows = json.loads(capsys.readouterr().out)
    assert rows[-1]["image"].endswith("notes.txt") and rows[-1]["error"]["code"] == "not_an_image"
    assert len(rows) == 2


@pytest.mark.parametrize("argv", [["calibrate", "runs/x"], ["export", "runs/x"], ["evaluate", "builtin", "--dataset",
                                                                                  "nosuch"]])
def test_post_hoc_commands_fail_before_loading_anything(argv: list[str], tmp_path: Path) -> None:
    code = f"import sys; from lesionlab.cli import main; rc = main({argv!r}); print(rc, 'lightning' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["2", "False"], out.stderr
