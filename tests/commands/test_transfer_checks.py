"""transfer-report checks every dataset before the engine, the model or any image loads."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lesionlab.engine import transfer_report as tr
from lesionlab.registry import UnknownNameError


def test_cli_checks_every_set_first(tmp_path: Path) -> None:
    argv = ["transfer-report", "builtin", "--datasets", "ph2", "nosuch", "--data-root", str(tmp_path)]
    code = (f"import sys; from lesionlab.cli import main; rc = main({argv!r}); print(rc, "
            "'lesionlab.engine.transfer_report' in sys.modules, 'lesionlab.serving.predictor' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["2", "False", "False"], out.stderr
    assert "ph2" in out.stderr  # the first set is missing under this root: named before 'nosuch' is reached


def test_api_checks_every_set_before_loading_the_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(tr, "load_run", lambda *a, **k: pytest.fail("the run must not load before the sets pass"))
    monkeypatch.setattr(tr, "load_dataset", lambda cfg: None if cfg.dataset == "ph2" else
                        (_ for _ in ()).throw(UnknownNameError(f"Unknown dataset {cfg.dataset!r}")))
    with pytest.raises(UnknownNameError, match="nosuch"):
        tr.transfer_report(tmp_path, ["test", "ph2", "nosuch"])
