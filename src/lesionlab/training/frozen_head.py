"""Frozen backbone + feature cache: the head (and metadata branch) trains on cached embeddings, not images.

With ``model.freeze_backbone=true`` and ``model.feature_cache=true`` the backbone's pooled features are computed
once per (image cache, backbone, weights) by :mod:`lesionlab.models.features` and every epoch only runs the head,
which is what makes frozen-backbone studies and linear probes cheap. It plugs into
:func:`lesionlab.training.staged.fit_stages` as a ``head_trainer``, reusing the feature-space Lightning module.
"""

from __future__ import annotations

import logging
import warnings

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from lesionlab.config import ConfigError, ExperimentConfig, StageConfig
from lesionlab.data.prepare import PreparedData
from lesionlab.models.features import check_cacheable, extract_features
from lesionlab.training.callbacks import KeepBest
from lesionlab.training.feature_smote import FeatureHeadModule
from lesionlab.training.resampling import TrainingSet, assert_train_only
from lesionlab.training.samplers import create_sampler
from lesionlab.training.trainer_factory import TrainerMaker, monitor_mode

logger = logging.getLogger(__name__)


def uses_cached_head(cfg: ExperimentConfig) -> bool:
    """Whether this run trains its head on the frozen-backbone feature cache."""
    return cfg.model.freeze_backbone and cfg.model.feature_cache


class CachedFeatureHead:
    """A ``head_trainer``: fits ``model.classify_features`` on cached features of the (resampled) training split.

    ``metadata`` holds the encoded patient metadata of every table row (metadata-fusion models). Augmentation does
    not apply (features are computed once from the un-augmented images); samplers and duplication-based
    resampling do. Pixel-space SMOTE images have no cached features and are refused.
    """

    def __init__(self, data: PreparedData, ts: TrainingSet, cfg: ExperimentConfig, mean: tuple[float, ...],
                 std: tuple[float, ...], metadata: np.ndarray | None = None) -> None:
        check_cacheable(cfg.model)
        if any(s.unfreeze != "head" for s in cfg.train.stages):
            raise ConfigError("model.freeze_backbone=true contradicts train.stages that unfreeze backbone layers")
        if len(ts.synthetic_targets):
            raise ConfigError("model.feature_cache trains on cached features of real images; pixel-space SMOTE "
                              "images have none: use train.sampling.smote_space=feature or model.feature_cache=false")
        self.data, self.ts, self.cfg, self.mean, self.std, self.metadata = data, ts, cfg, mean, std, metadata
        self.features = None

    def _loader(self, x: np.ndarray, y: np.ndarray, positions: np.ndarray, train: bool) -> DataLoader:
        tensors = [torch.from_numpy(np.asarray(x, dtype=np.float32)), torch.from_numpy(y.astype(np.int64))]
        if self.metadata is not None:
            tensors.append(torch.from_numpy(np.asarray(self.metadata[positions], dtype=np.float32)))
        cfg = self.cfg
        if not train:
            return DataLoader(TensorDataset(*tensors), batch_size=cfg.eval.batch_size)
        sampler = create_sampler(cfg.train.sampling.sampler, y, cfg.train.seed)
        return DataLoader(TensorDataset(*tensors), batch_size=cfg.train.batch_size, shuffle=sampler is None,
                          sampler=sampler, drop_last=len(y) > cfg.train.batch_size)

    def __call__(self, module: L.LightningModule, stage: StageConfig, make_trainer: TrainerMaker,
                 callbacks: list[L.Callback]) -> int:
        data, ts, cfg = self.data, self.ts, self.cfg
        self.features = extract_features(data, cfg.model, backbone=module.model.backbone, mean=self.mean,
                                         std=self.std, progress=cfg.train.progress)
        feats = self.features.features  # row i <-> table position i
        split = data.table["split"].to_numpy()
        train_pos, val_pos = np.flatnonzero(split == "train"), np.flatnonzero(split == "val")
        assert_train_only(ts.positions, train_pos, np.flatnonzero(split != "train"))
        train_loader = self._loader(feats[ts.positions], ts.targets, ts.positions, train=True)
        val_loader = self._loader(feats[val_pos], data.targets()[val_pos], val_pos, train=False)
        head = FeatureHeadModule(module.model, module.loss_fn, cfg, len(data.dataset.class_names))
        head.cfg = module.cfg  # the stage's epochs and learning rate
        trainer = make_trainer(stage.epochs, [*callbacks, KeepBest(cfg.train.monitor, monitor_mode(cfg.train.monitor))])
        with warnings.catch_warnings():  # the frozen backbone is in eval mode on purpose
            warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode.*")
            trainer.fit(head, train_loader, val_loader)
        ema = getattr(module, "ema", None)
        if ema is not None:  # the exported weights are the best head, not a stale average
            ema.module.load_state_dict(module.model.state_dict())
        logger.info("Head trained on cached features %s (%s)", feats.shape, self.features.directory)
        return int(trainer.current_epoch)
