"""Under-sampling, duplication and SMOTE touch the training split only, with the counts the report shows."""

from __future__ import annotations

import numpy as np
import pytest

from lesionlab.config import ConfigError, ExperimentConfig, load_config
from lesionlab.data.splits import LeakageError
from lesionlab.engine.train import make_loaders
from lesionlab.registry import UnknownNameError
from lesionlab.training import train_set
from lesionlab.training.resampling import TrainingSet, assert_train_only, smote, undersample
from lesionlab.training.train_set import build_training_set
from tests.conftest import HELD_OUT_VALUE, TRAIN_MAX, make_prepared

TRAIN_COUNTS = np.array([30, 12, 9, 6, 20, 60, 4])


def cfg_with(*overrides: str) -> ExperimentConfig:
    return load_config(None, ["data.image_size=8", "train.trainer.num_workers=0", "train.batch_size=8", *overrides])


def split_positions(data, name: str) -> np.ndarray:
    return np.flatnonzero(data.table["split"].to_numpy() == name)


@pytest.mark.parametrize("overrides", [
    ["train.sampling.undersample_cap=10"],
    ["train.sampling.oversample=duplicate"],
    ["train.sampling.undersample_cap=10", "train.sampling.oversample=duplicate"],
    ["train.sampling.oversample=smote"],
    ["train.sampling.undersample_cap=15", "train.sampling.oversample=smote", "train.sampling.smote_k=3"],
])
def test_resampling_never_touches_val_or_test(prepared, overrides: list[str]) -> None:
    cfg = cfg_with(*overrides)
    ts = build_training_set(prepared, cfg)
    split = prepared.table["split"].to_numpy()
    assert set(split[ts.positions]) == {"train"}  # real samples: training split only
    # Pixels: training images are <= TRAIN_MAX, val/test images are HELD_OUT_VALUE everywhere. A synthetic image
    # interpolated with (or based on) a held-out image would exceed TRAIN_MAX.
    assert prepared.images[prepared.rows[ts.positions]].max() <= TRAIN_MAX
    if len(ts.synthetic_images):
        assert ts.synthetic_images.max() <= TRAIN_MAX
    # The loaders: validation keeps exactly its images, untransformed; training holds every resampled sample.
    train_loader, val_loader = make_loaders(prepared, cfg, ts)
    val = split_positions(prepared, "val")
    np.testing.assert_array_equal(val_loader.dataset.indices, prepared.rows[val])
    assert val_loader.dataset.transform is None
    assert len(train_loader.dataset) == len(ts.positions) + len(ts.synthetic_targets)
    assert (prepared.images[val_loader.dataset.indices] == HELD_OUT_VALUE).all()


def test_make_loaders_refuses_resampling_from_held_out(prepared, monkeypatch) -> None:
    """If resampling ever drew a validation image, training must not start."""
    real = train_set.resample_training_split

    def leaky(*args, **kwargs) -> TrainingSet:
        ts = real(*args, **kwargs)
        val = split_positions(prepared, "val")[:2]
        return TrainingSet(np.concatenate([ts.positions, val]), np.concatenate([ts.targets, [0, 0]]),
                           ts.synthetic_images, ts.synthetic_targets, ts.counts)

    monkeypatch.setattr(train_set, "resample_training_split", leaky)
    with pytest.raises(LeakageError, match="outside the training split"):
        make_loaders(prepared, cfg_with("train.sampling.oversample=duplicate"))


def test_assert_train_only() -> None:
    assert_train_only(np.array([1, 2, 2]), np.array([1, 2, 3]), np.array([4, 5]))
    with pytest.raises(LeakageError):
        assert_train_only(np.array([1, 4]), np.array([1, 2, 3]), np.array([4, 5]))
    with pytest.raises(LeakageError):
        assert_train_only(np.array([1, 9]), np.array([1, 2, 3]), np.array([4, 5]))


def test_undersampling_caps_each_class_seeded() -> None:
    positions = np.arange(100)
    targets = np.repeat([0, 1, 2], [70, 20, 10])
    a, ya = undersample(positions, targets, cap=15, seed=0)
    b, _ = undersample(positions, targets, cap=15, seed=0)
    c, _ = undersample(positions, targets, cap=15, seed=1)
    assert np.bincount(ya).tolist() == [15, 15, 10]
    assert set(a) <= set(positions) and len(set(a)) == len(a)  # a subset, no repeats
    np.testing.assert_array_equal(a, b)  # seeded
    assert set(a) != set(c)
    np.testing.assert_array_equal(targets[a], ya)  # labels travel with their samples


def test_counts_table(prepared) -> None:
    ts = build_training_set(prepared, cfg_with("train.sampling.undersample_cap=10", "train.sampling.oversample=smote",
                                               "train.sampling.smote_k=3"))
    c = ts.counts.drop(index="total")
    np.testing.assert_array_equal(c["original"], TRAIN_COUNTS)
    np.testing.assert_array_equal(c["kept"], np.minimum(TRAIN_COUNTS, 10))
    assert (c["total"] == 10).all() and (c["duplicated"] == 0).all()
    np.testing.assert_array_equal(c["synthetic"], 10 - np.minimum(TRAIN_COUNTS, 10))
    assert ts.counts.loc["total", "synthetic"] == len(ts.synthetic_targets) == (10 - np.minimum(TRAIN_COUNTS, 10)).sum()

    dup = build_training_set(prepared, cfg_with("train.sampling.oversample=duplicate")).counts.drop(index="total")
    assert (dup["total"] == TRAIN_COUNTS.max()).all() and (dup["synthetic"] == 0).all()
    np.testing.assert_array_equal(dup["duplicated"], TRAIN_COUNTS.max() - TRAIN_COUNTS)


def test_smote_interpolates_between_same_class_neighbours() -> None:
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, (20, 4)), rng.normal(100, 1, (5, 4))]).astype(np.float32)
    y = np.array([0] * 20 + [1] * 5)
    synth, ys = smote(x, y, k=3, seed=0)
    assert synth.shape == (15, 4) and (ys == 1).all()
    lo, hi = x[y == 1].min(axis=0), x[y == 1].max(axis=0)
    assert ((synth >= lo - 1e-4) & (synth <= hi + 1e-4)).all()  # inside the minority class' bounding box


def test_smote_lowers_k_and_rejects_singletons() -> None:
    x = np.arange(24, dtype=np.float32).reshape(12, 2)
    synth, ys = smote(x, np.array([0] * 9 + [1] * 3), k=5, seed=0)  # k lowered to 2
    assert len(synth) == 6 and (ys == 1).all()
    with pytest.raises(ConfigError, match="at least 2 training samples"):
        smote(x, np.array([0] * 11 + [1]), k=5, seed=0)


def test_pixel_smote_writes_synthetic_images(prepared, tmp_path) -> None:
    from lesionlab.runs import RunPaths

    run = RunPaths.create(tmp_path, "r")
    ts = build_training_set(prepared, cfg_with("train.sampling.oversample=smote", "train.sampling.smote_k=3"), run)
    assert ts.synthetic_images.dtype == np.uint8 and ts.synthetic_images.shape[1:] == (8, 8, 3)
    saved = np.load(run.root / "synthetic" / "images.npy")
    np.testing.assert_array_equal(saved, ts.synthetic_images)
    assert (run.root / "resampling.csv").is_file()
    assert len(list((run.root / "synthetic" / "df").glob("*.png"))) == 60 - 6


def test_no_resampling_by_default(prepared, tmp_path) -> None:
    from lesionlab.runs import RunPaths

    run = RunPaths.create(tmp_path, "r")
    ts = build_training_set(prepared, cfg_with(), run)
    assert not ts.resampled and not (run.root / "resampling.csv").exists()
    np.testing.assert_array_equal(np.sort(ts.positions), split_positions(prepared, "train"))


@pytest.mark.parametrize(("override", "error", "listed"), [
    ("train.sampling.oversample=smoth", UnknownNameError, "duplicate, none, smote"),
    ("train.sampling.sampler=weighted", UnknownNameError, "balanced, random"),
    ("train.sampling.smote_space=latent", ConfigError, "pixel"),
])
def test_unknown_names_list_valid_ones(prepared, override: str, error: type, listed: str) -> None:
    with pytest.raises(error, match=listed):
        make_loaders(prepared, cfg_with(override))


def test_balanced_sampler_equalises_classes(prepared) -> None:
    train_loader, _ = make_loaders(prepared, cfg_with("train.sampling.sampler=balanced"))
    drawn = np.array(list(train_loader.sampler))
    targets = train_loader.dataset.targets[drawn]
    freq = np.bincount(targets, minlength=7) / len(targets)
    assert freq.min() > 0.05 and freq.max() < 0.25  # ~1/7 each, whereas nv alone is 34% of the split
    default_loader, _ = make_loaders(prepared, cfg_with())
    assert not hasattr(default_loader.sampler, "weights")  # random: the plain shuffling sampler


def test_smallest_class_is_checked(prepared) -> None:
    data = make_prepared([30, 12, 9, 6, 20, 60, 1])
    with pytest.raises(ConfigError, match="at least 2 training samples"):
        build_training_set(data, cfg_with("train.sampling.oversample=smote"))
