"""Synthetic prepared data for the training tests: tiny uint8 images whose split is visible in the pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from lesionlab.data.prepare import PreparedData
from lesionlab.data.table import LesionDataset
from lesionlab.data.taxonomy import get_taxonomy

HELD_OUT_VALUE = 255  # every validation/test pixel; training pixels stay <= TRAIN_MAX
TRAIN_MAX = 100


def make_prepared(per_class_train: list[int], per_class_held: int = 3, size: int = 8, seed: int = 0) -> PreparedData:
    """A ham7 dataset: ``per_class_train[c]`` training images per class, ``per_class_held`` val and test each.

    Training images have random pixels in [0, TRAIN_MAX]; validation and test images are all HELD_OUT_VALUE, so any
    resampling that touched them would leave pixels above TRAIN_MAX. Image rows are shuffled relative to the table.
    """
    taxonomy = get_taxonomy("ham7")
    rng = np.random.default_rng(seed)
    rows = []
    for c, name in enumerate(taxonomy.classes):
        for split, n in (("train", per_class_train[c]), ("val", per_class_held), ("test", per_class_held)):
            rows += [{"label": name, "split": split} for _ in range(n)]
    table = pd.DataFrame(rows)
    table["image_id"] = [f"img{i:04d}" for i in range(len(table))]
    table["lesion_id"] = [f"les{i:04d}" for i in range(len(table))]
    n = len(table)
    images = np.full((n, size, size, 3), HELD_OUT_VALUE, dtype=np.uint8)
    image_rows = rng.permutation(n)  # table position p ↔ images[image_rows[p]]
    train = table["split"].to_numpy() == "train"
    images[image_rows[train]] = rng.integers(0, TRAIN_MAX + 1, size=(int(train.sum()), size, size, 3))
    return PreparedData(LesionDataset("synthetic", taxonomy, table), images, image_rows, None,
                        pd.DataFrame())


@pytest.fixture
def prepared() -> PreparedData:
    return make_prepared([30, 12, 9, 6, 20, 60, 4])


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Seven class folders of 12 random 16 px images whose mean colour depends on the class (learnable)."""
    root = tmp_path_factory.mktemp("folder")
    rng = np.random.default_rng(0)
    for c, name in enumerate(get_taxonomy("ham7").classes):
        (root / name).mkdir()
        for k in range(12):
            base = np.array([30 * c, 255 - 30 * c, 120], dtype=np.int16)
            img = np.clip(base + rng.integers(-40, 41, (16, 16, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(root / name / f"{name}_{k}.png")
    return root
