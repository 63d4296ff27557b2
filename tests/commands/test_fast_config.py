"""Config mistakes are answered before heavy libraries load (well under 2 s), with "did you mean" for keys."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from lesionlab.config import ConfigError, load_config
from lesionlab.inference.tta import get_tta
from lesionlab.registry import UnknownNameError

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("override", "hint"), [
    ("train.epoch=5", "did you mean train.epochs?"),
    ("trian.epochs=5", "did you mean train?"),
    ("train.optimizer.lrr=0.1", "did you mean train.optimizer.lr?"),
])
def test_unknown_key_suggests_the_closest(override: str, hint: str) -> None:
    with pytest.raises(ConfigError, match="valid:") as err:
        load_config(None, [override])
    assert hint in str(err.value)


def test_unknown_tta_suggests_the_closest() -> None:
    with pytest.raises(UnknownNameError, match="Did you mean 'd4'"):
        get_tta("d8")


@pytest.mark.parametrize(("argv", "expected"), [
    (["train", "train.epoch=5"], "did you mean train.epochs?"),
    (["train", "trian.epochs=5"], "did you mean train?"),
    (["train", "eval.tta=d8"], "eval.tta"),
    (["train", "train.epochs=abc"], "train.epochs must be an integer"),
    (["cv", "train.epoch=5"], "did you mean train.epochs?"),
    (["leakage-audit", "train.epoch=5"], "did you mean train.epochs?"),
    (["sweep", "train.epoch=5", "--grid", "lr=1e-3,1e-2"], "did you mean train.epochs?"),
    (["study", "focal-ablaton"], "did you mean 'focal-ablation'?"),
])
def test_config_errors_come_before_heavy_imports(argv: list[str], expected: str, tmp_path: Path) -> None:
    """In a fresh interpreter: neither PyTorch nor Lightning is imported before the answer."""
    argv = [argv[0], "--config", str(ROOT / "configs" / "default.yaml"), *argv[1:]] if argv[0] != "study" else argv
    code = (f"import sys; from lesionlab.cli import main; rc = main({argv!r}); "
            "print(rc, 'torch' in sys.modules, 'lightning' in sys.modules)")
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - t0
    assert out.stdout.split() == ["2", "False", "False"], out.stderr
    assert expected in out.stderr
    assert seconds < 5  # about 0.3 s on 2 CPU cores; generous for a loaded CI machine
