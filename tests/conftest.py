"""Shared fixtures: the real data beside the checkout (read-only) and throw-away cache directories."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

SHARED_ENV = "LESIONLAB_SHARED_DATA"

# The one tiny-model recipe for tests that train through ``lesionlab train`` (or ``load_config``): a tiny ResNet at
# 16 px for one epoch, no TTA, no Grad-CAM gallery, no loader worker processes. A test appends what it needs (its data,
# size, epochs): the last override of a key wins.
TINY = ("model.backbone=tiny-resnet", "data.image_size=16", "train.epochs=1", "train.batch_size=16",
        "train.progress=false", "train.trainer.num_workers=0", "eval.tta=none", "eval.gradcam_images=0")


def _shared_data_dir() -> Path:
    """``$LESIONLAB_SHARED_DATA``, else the ``shared/data`` folder beside the repository."""
    if os.environ.get(SHARED_ENV):
        return Path(os.environ[SHARED_ENV]).expanduser()
    return Path(__file__).resolve().parents[1].parent / "shared" / "data"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests that read the real data carry the ``realdata`` marker, so ``-m 'not realdata'`` deselects them."""
    for item in items:
        if "shared_data" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.realdata)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The read-only real data folder (HAM10000 + ISIC 2019 tables); skips when it is not there.

    The files are CC BY-NC: tests read them or copy them into ``tmp_path``, never into the repository.
    """
    root = _shared_data_dir()
    if not (root / "ham10000" / "HAM10000_metadata.csv").is_file():
        pytest.skip(f"real data not found at {root} (set ${SHARED_ENV} or place shared/data beside the checkout)")
    return root


@pytest.fixture(scope="session")
def ham_images_dir(shared_data: Path) -> Path:
    """The 10,015 HAM10000 images at 200x150."""
    folder = shared_data / "ham10000" / "images_200x150"
    if not folder.is_dir():
        pytest.skip(f"HAM10000 images not found at {folder}")
    return folder


@pytest.fixture(scope="session")
def isic_ground_truth(shared_data: Path) -> Path:
    path = shared_data / "isic2019" / "ISIC_2019_Training_GroundTruth.csv"
    if not path.is_file():
        pytest.skip(f"ISIC 2019 ground truth not found at {path}")
    return path


@pytest.fixture(scope="session")
def ham_metadata(shared_data: Path) -> pd.DataFrame:
    """The official HAM10000 metadata table (10,015 rows). Do not modify it: it is shared by the session."""
    return pd.read_csv(shared_data / "ham10000" / "HAM10000_metadata.csv")


@pytest.fixture
def copy_ham_images(ham_images_dir: Path, ham_metadata: pd.DataFrame, tmp_path: Path):
    """Factory: copy ``n`` real images (classes interleaved, deterministic) into ``tmp_path/<folder>``."""

    def copy(n: int, folder: str = "images") -> list[Path]:
        ids = ham_metadata.groupby("dx")["image_id"].apply(list)
        order = [i for group in zip(*ids.to_list(), strict=False) for i in group][:n]
        dest = tmp_path / folder
        dest.mkdir(parents=True, exist_ok=True)
        return [Path(shutil.copy2(ham_images_dir / f"{i}.jpg", dest / f"{i}.jpg")) for i in order]

    return copy


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    """An empty folder for image-array caches."""
    path = tmp_path / "cache"
    path.mkdir()
    return path


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing a test does may write into the user's real cache directory."""
    monkeypatch.setenv("LESIONLAB_CACHE", str(tmp_path_factory.getbasetemp() / "lesionlab-cache"))


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory):
    """Factory: ``lesionlab train`` (or ``command``, e.g. ``cv``) with :data:`TINY` + ``overrides``; returns the one
    run directory it made.

    ``out`` is the output directory (a fresh temporary one by default), ``data_root`` the ``--data-root``. Session
    scoped, so module- and session-scoped fixtures can share one trained run among many tests.
    """
    from lesionlab.cli import main

    def train(*overrides: str, name: str = "tiny", out: Path | None = None, data_root: str | Path | None = None,
              command: str = "train") -> Path:
        out = Path(out) if out is not None else tmp_path_factory.mktemp(f"{name}-runs")
        before = set(out.iterdir()) if out.is_dir() else set()
        root = ["--data-root", str(data_root)] if data_root is not None else []
        assert main(["-q", command, *root, "--output-dir", str(out), f"name={name}", *TINY, *overrides]) == 0
        (run,) = [p for p in out.iterdir() if p.is_dir() and p not in before]
        return run

    return train
