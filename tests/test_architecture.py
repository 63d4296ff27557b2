"""The layering contract (import-linter) and the promise that predicting and serving never import Lightning."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def _lint_imports() -> str:
    exe = Path(sys.executable).with_name("lint-imports")
    return str(exe) if exe.is_file() else (shutil.which("lint-imports") or pytest.fail("import-linter not installed"))


def test_import_linter_contracts_are_kept() -> None:
    out = subprocess.run([_lint_imports(), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "0 broken" in out.stdout


def _run(code: str, tmp_path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture
def lesion_image(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    pixels = np.full((150, 200, 3), (200, 160, 140), np.uint8)
    pixels[40:110, 60:140] = (110, 70, 50)
    pixels = np.clip(pixels.astype(int) + rng.integers(-20, 20, pixels.shape), 0, 255).astype(np.uint8)
    path = tmp_path / "lesion.jpg"
    Image.fromarray(pixels).save(path)
    return path


def test_predict_does_not_import_lightning(lesion_image: Path, tmp_path: Path) -> None:
    out = _run(f"""
        import sys
        from lesionlab.cli import main
        code = main(["predict", {str(lesion_image)!r}, "--format", "json"])
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("lightning", "pytorch_lightning"))
        print("HEAVY", heavy, "CODE", code)
    """, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert '"triage_priority"' in out.stdout or '"priority"' in out.stdout  # it really predicted
    assert "HEAVY [] CODE 0" in out.stdout, out.stdout[-2000:]


def test_serve_does_not_import_lightning(lesion_image: Path, tmp_path: Path) -> None:
    out = _run(f"""
        import sys
        import uvicorn
        from fastapi.testclient import TestClient
        from lesionlab.cli import main
        apps = []
        uvicorn.run = lambda app, **kwargs: apps.append(app)  # build the service, do not listen
        assert main(["serve"]) == 0
        with open({str(lesion_image)!r}, "rb") as fh:
            r = TestClient(apps[0]).post("/v1/predict", files={{"image": ("lesion.jpg", fh, "image/jpeg")}})
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("lightning", "pytorch_lightning"))
        print("STATUS", r.status_code, "HEAVY", heavy)
    """, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "STATUS 200 HEAVY []" in out.stdout, out.stdout[-2000:] + out.stderr[-2000:]


def test_training_without_the_train_extra_says_what_to_install(tmp_path: Path) -> None:
    out = _run("""
        import sys
        sys.modules["lightning"] = None  # as if `pip install lesionlab[serve]` only: Lightning is not installed
        from lesionlab.cli import main
        sys.exit(main(["train", "train.epochs=1", "output_dir=runs"]))
    """, tmp_path)
    assert out.returncode == 2, out.stderr[-2000:]
    assert "pip install 'lesionlab[train]'" in out.stderr and "lightning" in out.stderr
    assert not (tmp_path / "runs").exists()


def test_every_user_error_derives_from_one_base() -> None:
    import lesionlab.cli  # noqa: F401  (imports the command modules)
    from lesionlab.config import ConfigError
    from lesionlab.data.splits import LeakageError
    from lesionlab.data.table import DatasetError
    from lesionlab.errors import USER_ERRORS, LesionLabError
    from lesionlab.inference.quality import NotAssessableError
    from lesionlab.registry import UnknownNameError

    for error in (ConfigError, DatasetError, LeakageError, NotAssessableError, UnknownNameError):
        assert issubclass(error, LesionLabError) and issubclass(error, USER_ERRORS)
    assert issubclass(ConfigError, ValueError)  # built-in bases are kept for callers that caught them
