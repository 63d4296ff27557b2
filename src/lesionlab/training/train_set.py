"""The training split as the loader sees it: resampled (train split only), with synthetic images and a sampler."""

from __future__ import annotations

import logging

import numpy as np
from torch.utils.data import ConcatDataset, Dataset, Sampler

from lesionlab.config import ExperimentConfig
from lesionlab.data.prepare import PreparedData
from lesionlab.data.torch_data import ArrayDataset
from lesionlab.data.transforms import Transform
from lesionlab.runs import RunPaths
from lesionlab.training.resampling import TrainingSet, resample_training_split, write_synthetic_images
from lesionlab.training.samplers import create_sampler

logger = logging.getLogger(__name__)

RESAMPLING_CSV = "resampling.csv"
SYNTHETIC_DIR = "synthetic"


def uses_feature_smote(cfg: ExperimentConfig) -> bool:
    return cfg.train.sampling.oversample == "smote" and cfg.train.sampling.smote_space == "feature"


def build_training_set(data: PreparedData, cfg: ExperimentConfig, run: RunPaths | None = None) -> TrainingSet:
    """Resample the training split per ``cfg.train``; with a run, write ``resampling.csv`` and synthetic images."""
    split = data.table["split"].to_numpy()
    train_pos, held_out = np.flatnonzero(split == "train"), np.flatnonzero(split != "train")
    targets = data.targets()
    ts = resample_training_split(data.images, data.rows, train_pos, targets[train_pos], data.dataset.class_names,
                                 cfg.train, held_out_positions=held_out)
    if ts.resampled or uses_feature_smote(cfg):
        logger.info("Training samples per class after resampling:\n%s", ts.counts.to_string())
        if run is not None:
            ts.counts.to_csv(run.root / RESAMPLING_CSV)
            if len(ts.synthetic_targets):
                write_synthetic_images(run.root / SYNTHETIC_DIR, ts.synthetic_images, ts.synthetic_targets,
                                       data.dataset.class_names)
    return ts


def training_dataset(data: PreparedData, ts: TrainingSet, transform: Transform | None,
                     metadata: np.ndarray | None = None) -> Dataset:
    """Real (possibly duplicated) training images followed by the synthetic ones, all with ``transform``.

    ``metadata`` (encoded patient metadata for metadata-fusion models) has one row per sample in that order.
    """
    n_real = len(ts.positions)
    real = ArrayDataset(data.images, data.rows[ts.positions], ts.targets, transform,
                        metadata=None if metadata is None else metadata[:n_real])
    if not len(ts.synthetic_targets):
        return real
    synthetic = ArrayDataset(ts.synthetic_images, np.arange(len(ts.synthetic_targets)), ts.synthetic_targets,
                             transform, metadata=None if metadata is None else metadata[n_real:])
    return ConcatDataset([real, synthetic])


def training_sampler(cfg: ExperimentConfig, ts: TrainingSet, sources: np.ndarray | None = None) -> Sampler | None:
    """The registered sampler over every training sample (real first, then synthetic); ``None`` = shuffle.
    ``sources``: the table's ``source`` column (several populations); synthetic SMOTE samples form a group of their
    own ("synthetic")."""
    targets = np.concatenate([ts.targets, ts.synthetic_targets])
    per_sample = None if sources is None else np.concatenate(
        [np.asarray(sources).astype(str)[ts.positions], np.full(len(ts.synthetic_targets), "synthetic")])
    return create_sampler(cfg.train.sampling.sampler, targets, cfg.train.seed, per_sample)
