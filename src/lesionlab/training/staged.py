"""Staged fine-tuning (the ISIC 2019 thesis' three steps, also the DermaMNIST study).

Stage 1 trains the head on a frozen backbone, stage 2 also the backbone's last block (``last-block``), stage 3
everything at a lower learning rate; each stage has its own epochs and learning rate and starts from the previous
stage's weights. The unfreeze levels live in :mod:`lesionlab.training.unfreeze`; frozen BatchNorm layers stay in
eval mode so their running statistics do not move either.
"""

from __future__ import annotations

import copy
import logging
import warnings
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import lightning as L
import numpy as np
from lightning.pytorch.callbacks import EarlyStopping
from torch import nn
from torch.utils.data import DataLoader

from lesionlab.config import ConfigError, ExperimentConfig, StageConfig, TrainConfig
from lesionlab.data.prepare import PreparedData
from lesionlab.training.callbacks import HistoryWriter
from lesionlab.training.resampling import TrainingSet
from lesionlab.training.trainer_factory import TrainerMaker
from lesionlab.training.unfreeze import UNFREEZE, apply_unfreeze

logger = logging.getLogger(__name__)


class FrozenBatchNormEval(L.Callback):
    """Keeps frozen BatchNorm layers in eval mode (Lightning puts the whole model in train mode)."""

    def __init__(self, modules: Sequence[nn.Module]) -> None:
        self.modules = tuple(modules)

    def _freeze(self) -> None:
        for m in self.modules:
            m.eval()

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._freeze()

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: object,
                             batch_idx: int) -> None:
        self._freeze()


def plan_stages(cfg: TrainConfig, feature_head: bool = False) -> tuple[StageConfig, ...]:
    """The configured stages; without any, one stage: all layers (or the head only, for feature-space SMOTE)."""
    if cfg.stages:
        for s in cfg.stages:
            UNFREEZE.get(s.unfreeze)  # fail early, listing the valid levels
        return tuple(cfg.stages)
    return (StageConfig(epochs=cfg.epochs, lr=cfg.optimizer.lr, unfreeze="head" if feature_head else "all"),)


#: ``(module, stage, make_trainer, callbacks) -> epochs run``: trains the head on features (feature-space SMOTE).
HeadTrainer = Callable[[L.LightningModule, StageConfig, TrainerMaker, list], int]


def fit_stages(module: L.LightningModule, train_loader: DataLoader, val_loader: DataLoader, cfg: TrainConfig, *,
               callbacks: Sequence[L.Callback], make_trainer: TrainerMaker,
               head_trainer: HeadTrainer | None = None) -> list[dict]:
    """Fit ``module`` stage by stage; weights carry over, the checkpoint callback keeps the best of all stages.

    Early stopping restarts with each stage. With ``head_trainer``, "head" stages train on frozen-backbone
    features instead of images. Returns one summary dict per stage; afterwards every parameter is trainable again.
    """
    base = module.cfg
    history = next((c for c in callbacks if isinstance(c, HistoryWriter)), None)
    stoppers = [c for c in callbacks if isinstance(c, EarlyStopping)]
    shared = [c for c in callbacks if not isinstance(c, EarlyStopping)]
    summaries = []
    try:
        for i, stage in enumerate(plan_stages(cfg, head_trainer is not None), start=1):
            freeze = apply_unfreeze(module.model, stage.unfreeze)
            logger.info("Stage %d: unfreeze=%s, %d epochs at lr %g: %s trainable (%s in the backbone) / %s frozen "
                        "parameters", i, stage.unfreeze, stage.epochs, stage.lr, f"{freeze.trainable:,}",
                        f"{freeze.backbone_trainable:,}", f"{freeze.frozen:,}")
            module.cfg = replace(base, epochs=stage.epochs, optimizer=replace(base.optimizer, lr=stage.lr))
            if stage.unfreeze == "head" and head_trainer is not None:
                epochs = head_trainer(module, stage, make_trainer, [c for c in shared if c is history])
            else:
                module.train()  # Lightning keeps modules' modes: undo an earlier stage's frozen-BN eval mode
                stage_callbacks = [*shared, *(copy.deepcopy(s) for s in stoppers),
                                   FrozenBatchNormEval(freeze.frozen_batchnorm)]
                trainer = make_trainer(stage.epochs, stage_callbacks)
                trainer.fit(module, train_loader, val_loader)
                epochs = int(trainer.current_epoch)
            if history is not None:
                history.epoch_offset += epochs
            summaries.append({"stage": i, "unfreeze": stage.unfreeze, "lr": stage.lr, "epochs": epochs,
                              "trainable_params": freeze.trainable, "frozen_params": freeze.frozen,
                              "backbone_trainable_params": freeze.backbone_trainable})
    finally:
        module.cfg = base
        for p in module.model.parameters():
            p.requires_grad_(True)
    return summaries


def fit_model(module: L.LightningModule, train_loader: DataLoader, val_loader: DataLoader, cfg: ExperimentConfig,
              *, callbacks: Sequence[L.Callback], make_trainer: TrainerMaker, data: PreparedData | None = None,
              training_set: TrainingSet | None = None, run_root: Path | None = None,
              ckpt_path: Path | None = None, metadata: np.ndarray | None = None) -> list[dict]:
    """The one fit of a run: all layers at once, staged fits when ``train.stages`` or feature-space SMOTE ask for
    them, or the head on cached frozen-backbone features (``model.freeze_backbone`` + ``model.feature_cache``).

    ``ckpt_path`` (a full ``last.ckpt``) resumes the single fit; staged fits are refused by the resume checks.
    ``metadata``: the encoded patient metadata of every row (metadata-fusion models on the feature cache)."""
    feature_smote = cfg.train.sampling.oversample == "smote" and cfg.train.sampling.smote_space == "feature"
    if cfg.model.freeze_backbone and cfg.model.feature_cache and not feature_smote:
        from lesionlab.training.frozen_head import CachedFeatureHead

        if data is None or training_set is None:
            raise ValueError("the feature-cache head needs the prepared data and the training set")
        return fit_stages(module, train_loader, val_loader, cfg.train, callbacks=callbacks, make_trainer=make_trainer,
                          head_trainer=CachedFeatureHead(data, training_set, cfg, module.mean, module.std, metadata))
    if not cfg.train.stages and not feature_smote:
        with warnings.catch_warnings():
            if val_loader is None:  # a refit validates nothing on purpose: Lightning's notice says nothing new
                warnings.filterwarnings("ignore", message=r".*`validation_step` but have no `val_dataloader`.*")
            make_trainer(cfg.train.epochs, list(callbacks)).fit(module, train_loader, val_loader, ckpt_path=ckpt_path)
        return []
    if ckpt_path is not None:
        raise ConfigError("only a single fit resumes from a checkpoint; staged fine-tuning starts again")
    if getattr(module.model, "frozen_backbone", False) and any(s.unfreeze != "head" for s in cfg.train.stages):
        raise ConfigError("model.freeze_backbone=true contradicts train.stages that unfreeze backbone layers")
    head = None
    if feature_smote:
        from lesionlab.training.feature_smote import FeatureSmoteHead

        if data is None or training_set is None:
            raise ValueError("feature-space SMOTE needs the prepared data and the training set")
        head = FeatureSmoteHead(data, training_set, cfg, module.mean, module.std, run_root)
    return fit_stages(module, train_loader, val_loader, cfg.train, callbacks=callbacks,
                      make_trainer=make_trainer, head_trainer=head)
