"""Leakage audit pieces: perceptual-hash near-duplicates across splits, the inflation table, and the split hooks
(``split.unit=image`` leaks lesions on purpose; ``split.val_fold`` makes one fold the validation split)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from lesionlab.config import ConfigError, DataConfig, SplitConfig
from lesionlab.data.near_duplicates import close_pairs, perceptual_hashes
from lesionlab.data.prepare import prepare_data
from lesionlab.engine.leakage_audit import (
    cross_split_duplicates,
    duplicate_summary,
    inflation_table,
    lesion_overlap,
)


def textured(seed: int, size: int = 48) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((size, size), Image.Resampling.BICUBIC))


def test_perceptual_hashes_find_near_duplicates_and_only_them() -> None:
    a, b = textured(0), textured(1)
    noisy = np.clip(a.astype(int) + np.random.default_rng(2).integers(-6, 7, a.shape), 0, 255).astype(np.uint8)
    h = perceptual_hashes(np.stack([a, noisy, b, a[:, ::-1]]))
    assert h.dtype == np.uint64 and len(h) == 4
    d = np.bitwise_count(h[:, None] ^ h[None, :])
    assert d[0, 1] <= 4 and d[0, 2] > 12 and d[0, 0] == 0
    pairs = close_pairs(h[:1], h, 4)
    assert sorted(pairs[:, 1].tolist()) == [0, 1]


def test_cross_split_duplicates_flag_same_lesion_pairs() -> None:
    images = np.stack([textured(i) for i in range(6)] + [textured(0), textured(3)])
    table = pd.DataFrame({"image_id": [f"i{k}" for k in range(8)], "label": ["nv"] * 8,
                          "lesion_id": ["L0", "L1", "L2", "L3", "L4", "L5", "L0", "L9"],
                          "split": ["train"] * 3 + ["val"] * 3 + ["test"] * 2})
    pairs = cross_split_duplicates(table, perceptual_hashes(images), max_distance=2)
    found = {(r.image_a, r.image_b, r.same_lesion) for r in pairs.itertuples()}
    assert ("i0", "i6", True) in found  # same lesion in train and test: a leak
    assert ("i3", "i7", False) in found  # an identical image under another lesion id: an undeclared duplicate
    summary = duplicate_summary(pairs).set_index("splits")
    assert summary.loc["train–test", "same lesion"] == 1 and summary.loc["val–test", "different lesion ids"] == 1


def test_inflation_table_is_image_level_minus_lesion_disjoint() -> None:
    def metrics(v: float) -> dict:
        return {"balanced_accuracy": v, "auc_macro": v + 0.1, "accuracy": v, "macro": {"f1": v}, "n": 10,
                "top2_accuracy": v, "per_class": {"mel": {"recall": v, "auc": v}}}

    table = inflation_table(metrics(0.5), metrics(0.6))
    assert table.loc["balanced accuracy", "inflation"] == pytest.approx(0.1)
    assert table.loc["balanced accuracy", "inflation %"] == pytest.approx(20.0)
    assert table.loc["mel sensitivity", "image-level split"] == 0.6
    assert "test images" not in table.index
    zero = inflation_table(metrics(0.0), metrics(0.3))
    assert np.isnan(zero.loc["balanced accuracy", "inflation %"])  # no infinite % from a zero base


@pytest.fixture
def csv_dataset(tmp_path: Path) -> DataConfig:
    """84 tiny images of 42 lesions (two images each), six lesions per HAM class."""
    rng = np.random.default_rng(0)
    rows = []
    (tmp_path / "img").mkdir()
    for c in ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"):
        for lesion in range(6):
            for k in range(2):
                name = f"{c}{lesion}_{k}.png"
                Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(tmp_path / "img" / name)
                rows.append({"image": name, "dx": c, "lesion_id": f"{c}-L{lesion}"})
    pd.DataFrame(rows).to_csv(tmp_path / "img" / "labels.csv", index=False)
    return DataConfig(dataset="csv", csv=str(tmp_path / "img" / "labels.csv"), image_size=8,
                      cache_dir=str(tmp_path / "cache"), split=SplitConfig(val=0.2, test=0.2))


def test_image_level_split_leaks_lesions_and_keeps_the_true_ids(csv_dataset: DataConfig) -> None:
    from dataclasses import replace

    lesion = prepare_data(csv_dataset, progress=False).table
    assert lesion_overlap(lesion, "lesion_id") == 0.0
    image_cfg = replace(csv_dataset, split=replace(csv_dataset.split, unit="image", seed=1))
    image = prepare_data(image_cfg, progress=False).table
    assert (image["true_lesion_id"] == lesion["lesion_id"]).all()
    assert image["lesion_id"].str.startswith("img:").all()
    assert lesion_overlap(image, "true_lesion_id") > 0.2  # most test lesions have their twin in training


def test_val_fold_makes_one_fold_the_validation_split(csv_dataset: DataConfig) -> None:
    from dataclasses import replace

    base = prepare_data(replace(csv_dataset, split=replace(csv_dataset.split, folds=3)), progress=False).table
    for k in range(3):
        cfg = replace(csv_dataset, split=replace(csv_dataset.split, folds=3, val_fold=k))
        table = prepare_data(cfg, progress=False).table
        assert (table["split"] == "test").equals(base["split"] == "test")  # the test split never moves
        pool = table["split"] != "test"
        assert ((table.loc[pool, "split"] == "val") == (table.loc[pool, "fold"] == k)).all()
        lesions = table.groupby("lesion_id")["split"].nunique()
        assert (lesions == 1).all()
    with pytest.raises(ConfigError, match="val_fold"):
        SplitConfig(folds=3, val_fold=3)
    with pytest.raises(ConfigError, match="val_fold"):
        SplitConfig(val_fold=0)
    with pytest.raises(ConfigError, match=r"split\.unit"):
        SplitConfig(unit="patient")


def test_leaked_subset_table_splits_one_models_test_images_by_leak() -> None:
    from lesionlab.engine.leakage_audit import leaked_subset_table

    table = pd.DataFrame({"image_id": ["a", "b", "c", "d", "e"], "lesion": ["L1", "L1", "L2", "L3", "L3"],
                          "split": ["train", "test", "test", "val", "test"]})
    preds = pd.DataFrame({"image_id": ["b", "c", "e"], "truth": ["nv", "mel", "nv"],
                          "prediction": ["nv", "nv", "mel"]})
    frame = leaked_subset_table(table, preds, "lesion")
    leaked, clean = frame.iloc[0], frame.iloc[1]
    assert leaked["test images"] == 2 and leaked["accuracy"] == 0.5  # b (right) and e (wrong) have twins in train/val
    assert clean["test images"] == 1 and clean["accuracy"] == 0.0
