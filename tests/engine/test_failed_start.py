"""A command that fails before its first epoch leaves no half-made run directory behind."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from lesionlab.cli import main
from lesionlab.runs import RunPaths, discards_unstarted_runs


@pytest.mark.parametrize("command", [["train"], ["cv", "--folds", "2"], ["leakage-audit"]])
def test_data_not_found_leaves_no_run_directory(command: list[str], tmp_path: Path, capsys) -> None:
    out = tmp_path / "runs"
    code = main([*command, "--data-root", str(tmp_path / "missing"), "--output-dir", str(out),
                 "data.image_size=32", "train.epochs=1"])
    assert code == 2
    assert "not found" in capsys.readouterr().err
    assert not out.exists() or not any(out.iterdir())


def test_a_run_that_trained_is_kept_and_nested_runs_are_handled(tmp_path: Path) -> None:
    @discards_unstarted_runs
    def inner(fail: bool, trained: bool) -> RunPaths:
        run = RunPaths.create(tmp_path, "inner")
        if trained:
            pd.DataFrame({"epoch": [1]}).to_csv(run.history, index=False)
        if fail:
            raise RuntimeError("boom")
        return run

    @discards_unstarted_runs
    def outer(fail_inner: bool, trained: bool) -> None:
        RunPaths.create(tmp_path, "outer")
        inner(fail_inner, trained)

    with pytest.raises(RuntimeError):
        outer(True, False)
    assert list(tmp_path.iterdir()) == []  # neither the inner nor the outer directory survives
    with pytest.raises(RuntimeError):
        inner(True, True)
    assert [p.name.split("-")[0] for p in tmp_path.iterdir()] == ["inner"]  # it trained an epoch: kept
    assert inner(False, False).root.is_dir()  # success keeps everything
