"""Re-balancing the training split: random under-sampling to a cap per class, then over-sampling by duplication or
SMOTE (imbalanced-learn), in pixel space on the cached arrays or in feature space on frozen-backbone embeddings.

Only the training split is ever resampled: :func:`assert_train_only` checks every real row that goes into training
against the validation/test rows, and the validation/test loaders are built from the untouched split.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from imblearn.over_sampling import SMOTE, RandomOverSampler
from imblearn.under_sampling import RandomUnderSampler
from PIL import Image

from lesionlab.config import ConfigError, TrainConfig
from lesionlab.data.splits import LeakageError
from lesionlab.registry import Registry

logger = logging.getLogger(__name__)

SMOTE_SPACES = ("pixel", "feature")
COUNT_COLUMNS = ("original", "kept", "duplicated", "synthetic", "total")


@dataclass(frozen=True)
class TrainingSet:
    """The training split after resampling.

    ``positions`` are rows of the dataset table (a duplicated image appears more than once; its pixels are
    ``images[data.rows[position]]``); ``synthetic_images`` are pixel-space SMOTE samples that exist only in this
    run. ``counts`` has one row per class: original, kept (after under-sampling), duplicated, synthetic, total.
    """

    positions: np.ndarray
    targets: np.ndarray
    synthetic_images: np.ndarray
    synthetic_targets: np.ndarray
    counts: pd.DataFrame

    @property
    def resampled(self) -> bool:
        c = self.counts
        return bool((c["kept"] != c["original"]).any() or c["duplicated"].any() or c["synthetic"].any())


#: ``(positions, targets, seed) -> (positions, targets)``: index-level over-sampling (SMOTE is separate).
OVERSAMPLERS: Registry[Callable[..., tuple[np.ndarray, np.ndarray]] | None] = Registry("over-sampler")


@OVERSAMPLERS.register("none", help="no over-sampling")
def _no_oversampling(positions: np.ndarray, targets: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    return positions, targets


@OVERSAMPLERS.register("duplicate", help="random duplication of minority images up to the largest class")
def duplicate(positions: np.ndarray, targets: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    ros = RandomOverSampler(sampling_strategy="not majority", random_state=seed)
    out, y = ros.fit_resample(positions.reshape(-1, 1), targets)
    return out.ravel(), y


OVERSAMPLERS.add("smote", None,
                 help="SMOTE up to the largest class, in pixel or feature space (train.sampling.smote_space)")


def undersample(positions: np.ndarray, targets: np.ndarray, cap: int | None,
                seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Keep at most ``cap`` random samples per class (seeded); smaller classes are kept whole."""
    if cap is None:
        return positions, targets
    classes, counts = np.unique(targets, return_counts=True)
    strategy = {int(c): int(min(n, cap)) for c, n in zip(classes, counts, strict=True)}
    rus = RandomUnderSampler(sampling_strategy=strategy, random_state=seed)
    out, y = rus.fit_resample(positions.reshape(-1, 1), targets)
    return out.ravel(), y


def smote(features: np.ndarray, targets: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """SMOTE every class up to the largest one; returns only the synthetic samples (float32) and their targets.

    ``k`` is lowered to (smallest class size - 1) where a class is that small; a class of one sample cannot be
    interpolated and is an error.
    """
    classes, counts = np.unique(targets, return_counts=True)
    if len(classes) < 2:
        raise ConfigError("SMOTE needs at least two classes in the training split")
    if counts.min() < 2:
        small = [int(c) for c, n in zip(classes, counts, strict=True) if n < 2]
        raise ConfigError(f"SMOTE needs at least 2 training samples per class; classes {small} have 1 "
                          "(raise data.max_samples or use train.sampling.oversample=duplicate)")
    k_eff = int(min(k, counts.min() - 1))
    if k_eff < k:
        logger.warning("SMOTE: k_neighbors lowered from %d to %d (smallest class has %d samples)", k, k_eff,
                       counts.min())
    x = np.ascontiguousarray(features.reshape(len(features), -1), dtype=np.float32)
    sm = SMOTE(sampling_strategy="not majority", k_neighbors=k_eff, random_state=seed)
    out, y = sm.fit_resample(x, targets)
    return out[len(x):], y[len(x):]


def pixel_smote(images: np.ndarray, rows: np.ndarray, targets: np.ndarray, k: int,
                seed: int) -> tuple[np.ndarray, np.ndarray]:
    """SMOTE on flattened uint8 images (as the ISIC 2019 thesis did); synthetic images come back as uint8."""
    shape = images.shape[1:]
    x = np.asarray(images[rows], dtype=np.float32)
    synth, y = smote(x, targets, k, seed)
    return np.clip(np.rint(synth), 0, 255).astype(np.uint8).reshape(-1, *shape), y


def assert_train_only(used: np.ndarray, train: np.ndarray, held_out: np.ndarray) -> None:
    """Every sample used for training must come from the training split and none from validation/test."""
    used = np.asarray(used)
    outside = np.isin(used, held_out) | ~np.isin(used, train)
    if outside.any():
        bad = np.unique(used[outside])
        raise LeakageError(f"resampling used {len(bad)} sample(s) outside the training split (e.g. {bad[:5]})")


def count_table(class_names: Sequence[str], original: np.ndarray, kept: np.ndarray, final_real: np.ndarray,
                synthetic: np.ndarray) -> pd.DataFrame:
    """Per class: original / kept / duplicated / synthetic / total training samples."""
    n = len(class_names)

    def hist(t: np.ndarray) -> np.ndarray:
        return np.bincount(np.asarray(t, dtype=np.int64), minlength=n)

    kept_n, real_n, synth_n = hist(kept), hist(final_real), hist(synthetic)
    frame = pd.DataFrame({"original": hist(original), "kept": kept_n, "duplicated": real_n - kept_n,
                          "synthetic": synth_n, "total": real_n + synth_n}, index=list(class_names))
    frame.index.name = "class"
    frame.loc["total"] = frame.sum()
    return frame


def resample_training_split(images: np.ndarray, rows: np.ndarray, train_positions: np.ndarray, targets: np.ndarray,
                            class_names: Sequence[str], cfg: TrainConfig, *,
                            held_out_positions: np.ndarray) -> TrainingSet:
    """Under-sample, then over-sample the training split as ``cfg`` says.

    Args:
        images: the cached ``(N, H, W, 3)`` uint8 array; ``rows[p]`` is the image of table position ``p``.
        train_positions: table positions of the training split; ``targets`` their labels.
        held_out_positions: table positions of the validation and test splits, checked never to enter training.
    """
    s = cfg.sampling
    if s.smote_space not in SMOTE_SPACES:
        raise ConfigError(f"train.sampling.smote_space must be one of {SMOTE_SPACES}, got {s.smote_space!r}")
    oversampler = OVERSAMPLERS.get(s.oversample)
    train_positions = np.asarray(train_positions, dtype=np.int64)
    assert_train_only(train_positions, train_positions, held_out_positions)
    targets = np.asarray(targets, dtype=np.int64)
    kept, kept_t = undersample(train_positions, targets, s.undersample_cap, cfg.seed)
    positions, y = kept, kept_t
    synth = np.zeros((0, *images.shape[1:]), dtype=np.uint8)
    synth_y = np.zeros(0, dtype=np.int64)
    if oversampler is not None:
        positions, y = oversampler(kept, kept_t, seed=cfg.seed)
    elif s.smote_space == "pixel":
        synth, synth_y = pixel_smote(images, rows[kept], kept_t, s.smote_k, cfg.seed)
    # feature-space SMOTE runs on embeddings while the head trains (lesionlab.training.feature_smote)
    assert_train_only(positions, train_positions, held_out_positions)
    counts = count_table(class_names, targets, kept_t, y, synth_y)
    return TrainingSet(np.asarray(positions, dtype=np.int64), np.asarray(y, dtype=np.int64), synth,
                       np.asarray(synth_y, dtype=np.int64), counts)


def write_synthetic_images(directory: Path, images: np.ndarray, targets: np.ndarray, class_names: Sequence[str],
                           max_png_per_class: int = 100) -> Path:
    """Save all synthetic images as ``synthetic/images.npy`` + ``labels.csv`` and the first PNGs per class."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    np.save(directory / "images.npy", images)
    pd.DataFrame({"index": np.arange(len(targets)), "label": [class_names[t] for t in targets]}).to_csv(
        directory / "labels.csv", index=False)
    for c, name in enumerate(class_names):
        idx = np.flatnonzero(targets == c)[:max_png_per_class]
        if len(idx):
            (directory / name).mkdir(exist_ok=True)
        for i in idx:
            Image.fromarray(images[i]).save(directory / name / f"synthetic_{i:06d}.png")
    return directory
