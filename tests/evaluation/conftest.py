"""Fixtures of the evaluation-depth tests: tiny untrained run directories (no training) and a small real-image
dataset (a CSV over ~140 copied HAM10000 images, so no full-dataset cache is built)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from lesionlab.config import ModelConfig
from lesionlab.data.taxonomy import HAM7
from lesionlab.models.checkpoint import Preprocessing, save_model
from lesionlab.models.classifier import create_model

CLASSES = HAM7.classes


def make_run(root: Path, *, seed: int = 0, size: int = 16, tta: str = "none", temperature: float = 1.0,
             splits: pd.DataFrame | None = None) -> Path:
    """A run directory holding a random tiny-resnet ``model.pt`` (and ``splits.csv`` when given)."""
    torch.manual_seed(seed)
    model = create_model(ModelConfig(backbone="tiny-resnet", drop_rate=0.0), len(CLASSES)).eval()
    prep = Preprocessing(image_size=size, crop="center-square", mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25),
                         class_names=CLASSES, taxonomy="ham7", temperature=temperature, tta=tta)
    root.mkdir(parents=True, exist_ok=True)
    save_model(root / "model.pt", model, ModelConfig(backbone="tiny-resnet", drop_rate=0.0), prep)
    if splits is not None:
        splits.to_csv(root / "splits.csv", index=False)
    return root


@pytest.fixture
def run_factory(tmp_path: Path):
    def factory(name: str = "run", **kwargs) -> Path:
        return make_run(tmp_path / name, **kwargs)

    return factory


@pytest.fixture
def random_images() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=(12, 16, 16, 3), dtype=np.uint8)


@pytest.fixture(scope="session")
def ham_masks_dir(shared_data: Path) -> Path:
    folder = shared_data / "ham10000" / "masks_200x150"
    if not folder.is_dir():
        pytest.skip(f"HAM10000 lesion masks not found at {folder}")
    return folder


@pytest.fixture(scope="session")
def real_csv_dataset(ham_images_dir: Path, ham_metadata: pd.DataFrame,
                     tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``images/`` with 20 real images per class (whole lesions) and ``labels.csv`` (image, dx, lesion_id)."""
    folder = tmp_path_factory.mktemp("realcsv")
    rng = np.random.default_rng(0)
    picks = []
    for _, group in ham_metadata.groupby("dx"):
        lesions = group["lesion_id"].unique()
        rng.shuffle(lesions)
        chosen = group[group["lesion_id"].isin(lesions[:16])].head(20)
        picks.append(chosen)
    table = pd.concat(picks)
    (folder / "images").mkdir()
    for image_id in table["image_id"]:
        shutil.copy2(ham_images_dir / f"{image_id}.jpg", folder / "images" / f"{image_id}.jpg")
    table.assign(image="images/" + table["image_id"] + ".jpg")[["image", "dx", "lesion_id"]].to_csv(
        folder / "labels.csv", index=False)
    return folder


@pytest.fixture(scope="session")
def cv_dir(real_csv_dataset: Path, ham_masks_dir: Path, tmp_path_factory: pytest.TempPathFactory, tiny_run) -> Path:
    """A 2-fold cross-validation ensemble of a tiny model for 1 epoch on ~140 real images (every report section on),
    trained by ``lesionlab cv`` with ``data.split.folds`` in the config (its K when --folds is not given)."""
    root = tiny_run("data.split.folds=2", "data.dataset=csv", f"data.csv={real_csv_dataset / 'labels.csv'}",
                    "data.image_size=24", f"data.cache_dir={tmp_path_factory.mktemp('cvcache')}", "train.ema_decay=0",
                    "eval.tta=flips", "eval.gradcam_images=7", f"eval.mask_dir={ham_masks_dir}", name="t",
                    command="cv")
    assert root.name.startswith("t-cv2-")
    return root
