"""The LightningModule: uint8 batches in, normalised on the device, class-weighted loss, balanced accuracy."""

from __future__ import annotations

from collections.abc import Sequence

import lightning as L
import torch
import torchmetrics
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from lesionlab.config import TrainConfig
from lesionlab.data.transforms import to_model_input
from lesionlab.training.optim import create_optimizer, create_scheduler


class LesionModule(L.LightningModule):
    """Wraps a classifier with its loss, optimiser, schedule and epoch metrics."""

    def __init__(self, model: nn.Module, loss: nn.Module, train_cfg: TrainConfig, num_classes: int,
                 mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.model = model
        self.loss_fn = loss
        self.cfg = train_cfg
        self.mean, self.std = tuple(mean), tuple(std)
        self.train_bal_acc = torchmetrics.classification.MulticlassRecall(num_classes, average="macro")
        self.val_bal_acc = torchmetrics.classification.MulticlassRecall(num_classes, average="macro")
        self.val_auc = torchmetrics.classification.MulticlassAUROC(num_classes, average="macro")
        # Exponential moving average of the weights: validated, checkpointed and exported instead of the raw model.
        self.ema = (AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(train_cfg.ema_decay), use_buffers=True)
                    if train_cfg.ema_decay > 0 else None)

    def inference_model(self) -> nn.Module:
        """The weights to evaluate and ship: the EMA copy when enabled, else the trained model."""
        return self.ema.module if self.ema is not None else self.model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(to_model_input(images, self.mean, self.std))

    def on_train_batch_end(self, outputs: object, batch: object, batch_idx: int) -> None:
        if self.ema is not None:
            self.ema.update_parameters(self.model)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        images, targets = batch
        logits = self(images)
        loss = self.loss_fn(logits, targets)
        self.train_bal_acc.update(logits.detach(), targets)
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(targets),
                 sync_dist=True)
        self.log("train_bal_acc", self.train_bal_acc, on_step=False, on_epoch=True, batch_size=len(targets))
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        images, targets = batch
        logits = self.inference_model()(to_model_input(images, self.mean, self.std))
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
        opt = create_optimizer(self.cfg.optimizer, [p for p in self.model.parameters() if p.requires_grad], self.cfg.lr,
                               self.cfg.weight_decay)
        total = int(self.trainer.estimated_stepping_batches)
        steps_per_epoch = max(1, total // max(1, self.trainer.max_epochs or 1))
        sched = create_scheduler(self.cfg.scheduler, opt, total, int(self.cfg.warmup_epochs * steps_per_epoch))
        if sched is None:
            return opt
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
