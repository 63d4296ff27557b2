"""The LightningModule: uint8 batches in, normalised on the device, class-weighted loss, balanced accuracy."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import lightning as L
import torch
import torchmetrics
from torch import nn
from torch.optim.swa_utils import AveragedModel

from lesionlab.config import TrainConfig
from lesionlab.data.batch_augment import batch_augmentation, rank_generator
from lesionlab.data.transforms import to_model_input
from lesionlab.errors import LesionLabError
from lesionlab.training.mixing import batch_mixer, mix_batch
from lesionlab.training.optim import SELF_AVERAGING, OptimizerModeHooks, create_optimizer, lightning_schedulers
from lesionlab.training.param_groups import parameter_groups
from lesionlab.training.speedups import (
    backprop_fraction,
    progressive_size,
    resize_batch,
    running_stats_frozen,
    select_for_backprop,
    smallest_size,
)

logger = logging.getLogger(__name__)



def ema_with_warmup(decay: float):
    """EMA update whose decay ramps up as ``min(decay, (1 + n) / (10 + n))`` (timm's warm-up), so short runs and
    early validation see trained weights rather than the random initialisation."""

    def update(ema_params: list[torch.Tensor], params: list[torch.Tensor], num_averaged: torch.Tensor) -> None:
        n = float(num_averaged)
        d = min(decay, (1.0 + n) / (10.0 + n))
        pairs = [(e, p) for e, p in zip(ema_params, params, strict=True) if e.is_floating_point()]
        if pairs:
            torch._foreach_lerp_([e for e, _ in pairs], [p.to(e.dtype) for e, p in pairs], 1.0 - d)
        for e, p in zip(ema_params, params, strict=True):  # integer buffers (BatchNorm step counters) are copied
            if not e.is_floating_point():
                e.copy_(p)

    return update

class TrainingDivergedError(LesionLabError, RuntimeError):
    """The training loss became NaN or infinite: the recipe (learning rate, precision, speed-ups) needs changing."""


class LesionModule(OptimizerModeHooks, L.LightningModule):
    """Wraps a classifier with its loss, optimiser, schedule and epoch metrics."""

    def __init__(self, model: nn.Module, loss: nn.Module, train_cfg: TrainConfig, num_classes: int,
                 mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.model = model
        self.loss_fn = loss
        self.cfg = train_cfg
        self.mean, self.std = tuple(mean), tuple(std)
        self.batch_augment = batch_augmentation(train_cfg)  # augmentation.mode=batch: augmented here, on the device
        self.min_train_size = smallest_size(model)  # progressive resizing's floor
        self.num_classes = num_classes
        self.mixer = batch_mixer(train_cfg.augmentation.mix, num_classes)  # mixup / CutMix soft targets, or None
        self.augment_rng: torch.Generator | None = None  # per-rank, made in on_fit_start
        self.train_bal_acc = torchmetrics.classification.MulticlassRecall(num_classes, average="macro")
        self.val_bal_acc = torchmetrics.classification.MulticlassRecall(num_classes, average="macro")
        self.val_auc = torchmetrics.classification.MulticlassAUROC(num_classes, average="macro")
        # Exponential moving average of the weights: validated, checkpointed and exported instead of the raw model.
        # Schedule-Free optimizers keep their own average (switched by optimizer.train()/eval()): no EMA on top.
        use_ema = train_cfg.ema_decay > 0 and train_cfg.optimizer.name.lower() not in SELF_AVERAGING
        if train_cfg.ema_decay > 0 and not use_ema:
            logger.warning("train.optimizer.name=%s averages its own weights; weight EMA (train.ema_decay) is off",
                           train_cfg.optimizer.name)
        self.ema = (AveragedModel(model, multi_avg_fn=ema_with_warmup(train_cfg.ema_decay), use_buffers=True)
                    if use_ema else None)

    def inference_model(self) -> nn.Module:
        """The weights to evaluate and ship: the EMA copy when enabled, else the trained model."""
        return self.ema.module if self.ema is not None else self.model

    def forward(self, images: torch.Tensor, meta: torch.Tensor | None = None) -> torch.Tensor:
        return _call(self.model, to_model_input(images, self.mean, self.std), meta)

    def on_train_batch_end(self, outputs: object, batch: object, batch_idx: int) -> None:
        if self.ema is not None:
            self.ema.update_parameters(self.model)

    def on_fit_start(self) -> None:
        # Batched augmentation draws from its own generator, offset by the rank: seed_everything gives every DDP rank
        # the same global stream, which would give sample i of every rank the same flips, crops and colours.
        if self.batch_augment is not None:
            self.augment_rng = rank_generator(self.device, self.global_rank)

    def on_train_epoch_end(self) -> None:
        loss = self.trainer.callback_metrics.get("train_loss")
        if loss is not None and not torch.isfinite(loss):
            raise TrainingDivergedError(
                f"training diverged: the training loss of epoch {self.current_epoch + 1} is {float(loss)}; lower "
                "train.optimizer.lr, use train.trainer.precision=32-true, or turn off train.speedups")

    def augment_batch(self, images: torch.Tensor) -> torch.Tensor:
        """``train.augmentation.mode=batch``: the uint8 batch augmented on the device (unchanged otherwise)."""
        if self.batch_augment is None:
            return images
        rng = self.augment_rng
        return self.batch_augment(images, generator=rng if rng is not None and rng.device == images.device else None)

    def training_progress(self) -> float:
        """Fraction of this fit's optimiser steps done (0 when not attached to a trainer)."""
        trainer = self._trainer
        if trainer is None:
            return 0.0
        return trainer.global_step / max(1, int(trainer.estimated_stepping_batches))

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        images, targets, *meta = batch  # metadata models get (images, targets, metadata) batches
        images = self.augment_batch(images)
        x = to_model_input(images, self.mean, self.std)
        speed, progress = self.cfg.speedups, self.training_progress()
        x = resize_batch(x, progressive_size(x.shape[-1], speed, progress, minimum=self.min_train_size))
        keep = backprop_fraction(speed, progress)
        if keep < 1:  # selective backprop: the hardest samples only; the metrics see the whole batch
            x, targets_bp, meta, scored = select_for_backprop(lambda v, m: _call(self.model, v, *m), x, targets,
                                                              meta, keep)
            self.train_bal_acc.update(scored, targets)
            targets = targets_bp
            with running_stats_frozen(self.model):  # BatchNorm statistics: the whole batch's, from the scoring pass
                logits = _call(self.model, x, *meta)
        else:
            x, loss_targets = mix_batch(self.mixer, x, targets, self.num_classes)
            logits = _call(self.model, x, *meta)
            self.train_bal_acc.update(logits.detach(), targets)
            targets = loss_targets
        loss = self.loss_fn(logits, targets)
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(targets),
                 sync_dist=True)
        self.log("train_bal_acc", self.train_bal_acc, on_step=False, on_epoch=True, batch_size=len(targets))
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> None:
        images, targets, *meta = batch
        logits = _call(self.inference_model(), to_model_input(images, self.mean, self.std), *meta)
        loss = self.loss_fn(logits, targets)
        self.val_bal_acc.update(logits, targets)
        self.val_auc.update(logits.softmax(-1), targets)
        self.log("val_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(targets),
                 sync_dist=True)
        self.log("val_bal_acc", self.val_bal_acc, on_step=False, on_epoch=True, prog_bar=True,
                 batch_size=len(targets))
        self.log("val_auc", self.val_auc, on_step=False, on_epoch=True, batch_size=len(targets))

    def predict_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self.inference_model()(to_model_input(batch[0], self.mean, self.std)).float().softmax(-1)

    def configure_optimizers(self):
        o, s = self.cfg.optimizer, self.cfg.schedule
        groups = parameter_groups(self.model, o.lr, o.weight_decay, o.layer_decay)
        opt = create_optimizer(o.name, groups, o.lr, o.weight_decay)
        total = int(self.trainer.estimated_stepping_batches)
        steps_per_epoch = max(1, total // max(1, self.trainer.max_epochs or 1))
        mode = "min" if self.cfg.monitor == "val_loss" else "max"
        scheds = lightning_schedulers(s.name, opt, total, int(s.warmup_epochs * steps_per_epoch),
                                      monitor=self.cfg.monitor, mode=mode, factor=s.plateau_factor,
                                      patience=s.plateau_patience)
        return ([opt], scheds) if scheds else opt


def _call(model: nn.Module, x: torch.Tensor, meta: torch.Tensor | None = None) -> torch.Tensor:
    """``model(x)``, or ``model(x, meta=meta)`` for a metadata-fusion model's batches."""
    return model(x) if meta is None else model(x, meta=meta)
