"""From a :class:`DataConfig` to cached pixels + labels + a checked lesion-disjoint split, in one call."""

from __future__ import annotations

import hashlib
import logging
import math
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from lesionlab.config import ConfigError, DataConfig
from lesionlab.data.cache import ImageArrays, build_or_load
from lesionlab.data.datasets import load_dataset
from lesionlab.data.roots import resolve_cache_dir
from lesionlab.data.splits import SPLITS, check_no_leakage, kfold_assignment, lesion_disjoint_split, split_groups
from lesionlab.data.table import LesionDataset

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreparedData:
    """A dataset whose rows align with ``images`` (row i ↔ ``images[rows[i]]``) and carry a ``split`` column."""

    dataset: LesionDataset
    images: np.ndarray
    rows: np.ndarray  # index into ``images`` for each table row
    arrays: ImageArrays
    skipped: pd.DataFrame

    @property
    def table(self) -> pd.DataFrame:
        return self.dataset.table

    def indices(self, split: str) -> np.ndarray:
        """Table row positions of one split."""
        return np.flatnonzero(self.table["split"].to_numpy() == split)

    def targets(self) -> np.ndarray:
        return self.dataset.targets()


def stratified_subsample(table: pd.DataFrame, n: int, seed: int = 0) -> np.ndarray:
    """Boolean mask keeping about ``n`` rows, whole lesions only, class proportions kept."""
    if n >= len(table):
        return np.ones(len(table), dtype=bool)
    folds = max(2, math.ceil(len(table) / n))
    cv = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    _, keep = next(cv.split(np.zeros(len(table)), table["label"].astype(str), split_groups(table)))
    mask = np.zeros(len(table), dtype=bool)
    mask[keep] = True
    return mask


def _given_split(table: pd.DataFrame, column: str) -> np.ndarray:
    """A split supplied by the dataset (e.g. DermaMNIST's official one); still checked for leakage by the caller."""
    if column not in table:
        raise ConfigError(f"split.column={column!r} is not a column of this dataset; columns: {list(table.columns)}")
    values = table[column].astype(str).str.lower()
    bad = sorted(set(values) - set(SPLITS))
    if bad:
        raise ConfigError(f"split column {column!r} holds {bad}; expected {SPLITS}")
    return values.to_numpy()


def per_source_split(table: pd.DataFrame, cfg: DataConfig) -> np.ndarray:
    """Each source split on its own with the same fractions and seed, so a source's split is the one it gets alone
    (e.g. HAM10000's test lesions stay the same when another population joins). Groups may not span sources."""
    shared = table.groupby(split_groups(table))["source"].nunique()
    if (shared > 1).any():
        raise ConfigError(f"split.per_source: {int((shared > 1).sum())} lesions or patients occur in several sources "
                          f"(first: {shared[shared > 1].index[:3].tolist()}); set prefix_ids on a source whose ids "
                          "are its own, or split the merged table as one (split.per_source=false)")
    split = np.empty(len(table), dtype=object)
    for _, rows in table.groupby("source", sort=False).indices.items():
        part = table.iloc[rows].reset_index(drop=True)
        split[rows] = lesion_disjoint_split(part, cfg.split.val, cfg.split.test, cfg.split.seed).to_numpy()
    return split.astype(str)


def _memoised_split(table: pd.DataFrame, cfg: DataConfig, cache_dir: Path) -> np.ndarray:
    """The lesion-disjoint split, stored beside the image cache and keyed by every input that decides it.

    Computing it takes seconds on HAM10000 (StratifiedGroupKFold); a repeated run reads it back instead. The
    leakage check still runs on the result every time.
    """
    per_source = cfg.split.per_source and table["source"].nunique() > 1
    h = hashlib.sha256(f"split-v1|{cfg.split.val}|{cfg.split.test}|{cfg.split.seed}".encode()
                       + (b"|per-source" if per_source else b""))
    for col in ("image_id", "lesion_id", "patient_id", "label") + (("source",) if per_source else ()):
        h.update(pd.util.hash_pandas_object(table[col].astype(str), index=False).to_numpy().tobytes())
    path = cache_dir / "splits" / f"{h.hexdigest()[:24]}.npy"
    if path.is_file():
        return np.load(path, allow_pickle=False).astype(str)
    split = (per_source_split(table, cfg) if per_source
             else lesion_disjoint_split(table, cfg.split.val, cfg.split.test, cfg.split.seed).to_numpy())
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp-{os.getpid()}.npy")
    np.save(tmp, split.astype("U5"))
    tmp.replace(path)
    return split


def _memoised_subsample(table: pd.DataFrame, n: int, seed: int, cache_dir: Path) -> np.ndarray:
    """:func:`stratified_subsample`, stored beside the image cache like the split and keyed by every input that
    decides it: on HAM10000 (~26 folds of 7,470 lesions for ``n=400``) it takes half a minute; a repeated run reads
    the same mask back."""
    if n >= len(table):
        return stratified_subsample(table, n, seed)
    h = hashlib.sha256(f"subsample-v1|{n}|{seed}|{len(table)}".encode())
    for column in (table["label"].astype(str), split_groups(table)):
        h.update(pd.util.hash_pandas_object(column, index=False).to_numpy().tobytes())
    path = cache_dir / "splits" / f"subsample-{h.hexdigest()[:24]}.npy"
    if path.is_file():
        return np.load(path, allow_pickle=False)
    mask = stratified_subsample(table, n, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp-{os.getpid()}.npy")
    np.save(tmp, mask)
    tmp.replace(path)
    return mask


def prepare_data(cfg: DataConfig, *, progress: bool = True, with_split: bool = True) -> PreparedData:
    """Load, cache (once per dataset/crop/size), drop unreadable images (only with ``skip_bad``), subsample, split."""
    dataset = load_dataset(cfg)
    arrays = build_or_load(dataset.table, dataset=dataset.name, crop=cfg.crop, size=cfg.image_size,
                           cache_dir=resolve_cache_dir(cfg.cache_dir), skip_bad=cfg.skip_bad, progress=progress,
                           canonical=cfg.canonical)
    rows = np.arange(len(dataset))
    skipped = pd.DataFrame(arrays.failures, columns=["image_id", "path", "reason", "detail"])
    keep = arrays.valid.copy()
    if cfg.max_samples is not None:
        keep &= _memoised_subsample(dataset.table, cfg.max_samples, cfg.split.seed,
                                    resolve_cache_dir(cfg.cache_dir))
    dataset, rows = dataset.subset(keep), rows[keep]
    if with_split:
        table = dataset.table.copy()
        if cfg.split.unit == "image":  # leakage audit only: forget lesion ids, so images of a lesion can span splits
            table["true_lesion_id"] = table["lesion_id"]
            table["lesion_id"], table["patient_id"] = "img:" + table["image_id"].astype(str), None
        if cfg.split.column:
            table["split"] = _given_split(table, cfg.split.column)
        else:
            table["split"] = _memoised_split(table, cfg, resolve_cache_dir(cfg.cache_dir))
        if cfg.split.folds:
            pool = table["split"] != "test"
            table["fold"] = -1
            table.loc[pool, "fold"] = kfold_assignment(table[pool], cfg.split.folds, cfg.split.seed).to_numpy()
            if cfg.split.val_fold is not None:  # cross-validation: one fold validates, the others train
                table.loc[pool, "split"] = np.where(table.loc[pool, "fold"] == cfg.split.val_fold, "val", "train")
        check_no_leakage(table, table["split"])
        dataset = LesionDataset(dataset.name, dataset.taxonomy, table)
    return PreparedData(dataset, arrays.images, rows, arrays, skipped)


REFIT_COLUMN = "split_before_refit"  # a refit's table keeps each row's original split here


def with_validation_in_training(data: PreparedData) -> PreparedData:
    """The same data with the validation lesions moved into the training split (a refit; test stays held out).

    The original split stays in the ``split_before_refit`` column (see :func:`original_split`)."""
    table = data.table.copy()
    table[REFIT_COLUMN] = table["split"]
    table["split"] = np.where(table["split"] == "val", "train", table["split"])
    check_no_leakage(table, table["split"])
    return replace(data, dataset=LesionDataset(data.dataset.name, data.dataset.taxonomy, table))


def original_split(data: PreparedData) -> PreparedData:
    """Undo :func:`with_validation_in_training` (unchanged data when it was not a refit)."""
    if REFIT_COLUMN not in data.table:
        return data
    table = data.table.copy()
    table["split"] = table.pop(REFIT_COLUMN)
    return replace(data, dataset=LesionDataset(data.dataset.name, data.dataset.taxonomy, table))
