"""Feature-space SMOTE: the head trains on frozen-backbone embeddings of the (under-sampled) training split plus
SMOTE samples interpolated between them, then the image stages (if any) continue from that head.

Embeddings come from the model-zoo feature cache (:func:`lesionlab.models.features.extract_features`), computed
once without augmentation; validation uses the embeddings of the untouched validation split.
"""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torchmetrics
from torch.utils.data import DataLoader, TensorDataset

from lesionlab.config import ConfigError, ExperimentConfig, StageConfig
from lesionlab.data.prepare import PreparedData
from lesionlab.training.callbacks import KeepBest
from lesionlab.training.optim import create_optimizer, lightning_schedulers, set_optimizer_mode
from lesionlab.training.resampling import TrainingSet, assert_train_only, count_table, smote
from lesionlab.training.samplers import create_sampler
from lesionlab.training.train_set import RESAMPLING_CSV
from lesionlab.training.trainer_factory import TrainerMaker, monitor_mode

logger = logging.getLogger(__name__)


class FeatureHeadModule(L.LightningModule):
    """Trains everything after the backbone (``model.classify_features``) on feature vectors."""

    def __init__(self, model: torch.nn.Module, loss: torch.nn.Module, cfg: ExperimentConfig, num_classes: int) -> None:
        super().__init__()
        self.model = model
        self.loss_fn = loss
        self.cfg = cfg.train
        self.train_bal_acc = torchmetrics.classification.MulticlassRecall(num_classes, average="macro")
        self.val_bal_acc = torchmetrics.classification.MulticlassRecall(num_classes, average="macro")
        self.val_auc = torchmetrics.classification.MulticlassAUROC(num_classes, average="macro")

    def _params(self) -> list[torch.nn.Parameter]:
        return [p for n, p in self.model.named_parameters() if not n.startswith("backbone.") and p.requires_grad]

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        x, y, *meta = batch  # (features, targets[, encoded metadata])
        logits = self.model.classify_features(x, *meta)
        loss = self.loss_fn(logits, y)
        self.train_bal_acc.update(logits.detach(), y)
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=len(y))
        self.log("train_bal_acc", self.train_bal_acc, on_step=False, on_epoch=True, batch_size=len(y))
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> None:
        x, y, *meta = batch  # (features, targets[, encoded metadata])
        logits = self.model.classify_features(x, *meta)
        self.val_bal_acc.update(logits, y)
        self.val_auc.update(logits.softmax(-1), y)
        self.log("val_loss", self.loss_fn(logits, y), on_step=False, on_epoch=True, batch_size=len(y))
        self.log("val_bal_acc", self.val_bal_acc, on_step=False, on_epoch=True, batch_size=len(y))
        self.log("val_auc", self.val_auc, on_step=False, on_epoch=True, batch_size=len(y))

    def on_train_epoch_start(self) -> None:
        self.model.backbone.eval()
        for opt in self.trainer.optimizers:
            set_optimizer_mode(opt, True)

    def on_validation_epoch_start(self) -> None:
        for opt in self.trainer.optimizers:
            set_optimizer_mode(opt, False)

    def configure_optimizers(self):
        o, s = self.cfg.optimizer, self.cfg.schedule
        opt = create_optimizer(o.name, self._params(), o.lr, o.weight_decay)
        total = int(self.trainer.estimated_stepping_batches)
        steps_per_epoch = max(1, total // max(1, self.trainer.max_epochs or 1))
        mode = "min" if self.cfg.monitor == "val_loss" else "max"
        scheds = lightning_schedulers(s.name, opt, total, int(s.warmup_epochs * steps_per_epoch),
                                      monitor=self.cfg.monitor, mode=mode, factor=s.plateau_factor,
                                      patience=s.plateau_patience)
        return ([opt], scheds) if scheds else opt


class FeatureSmoteHead:
    """A ``head_trainer`` for :func:`lesionlab.training.staged.fit_stages`."""

    def __init__(self, data: PreparedData, ts: TrainingSet, cfg: ExperimentConfig, mean: tuple[float, ...],
                 std: tuple[float, ...], run_root: Path | None = None) -> None:
        if getattr(cfg.model, "metadata", False):
            raise ConfigError("feature-space SMOTE (train.sampling.smote_space=feature) cannot synthesise patient "
                              "metadata; set model.metadata=false or train.sampling.smote_space=pixel")
        self.data, self.ts, self.cfg, self.mean, self.std, self.run_root = data, ts, cfg, mean, std, run_root

    def __call__(self, module: L.LightningModule, stage: StageConfig, make_trainer: TrainerMaker,
                 callbacks: list[L.Callback]) -> int:
        from lesionlab.models.features import extract_features

        data, ts, cfg = self.data, self.ts, self.cfg
        feats = extract_features(data, cfg.model, backbone=module.model.backbone, mean=self.mean, std=self.std,
                                 progress=cfg.train.progress).features  # row i ↔ table position i
        split = data.table["split"].to_numpy()
        train_pos, val_pos = np.flatnonzero(split == "train"), np.flatnonzero(split == "val")
        assert_train_only(ts.positions, train_pos, np.flatnonzero(split != "train"))
        x_real = np.asarray(feats[ts.positions], dtype=np.float32)
        x_syn, y_syn = smote(x_real, ts.targets, cfg.train.sampling.smote_k, cfg.train.seed)
        counts = count_table(data.dataset.class_names, data.targets()[train_pos], ts.targets, ts.targets, y_syn)
        logger.info("Feature-space SMOTE, training samples per class:\n%s", counts.to_string())
        if self.run_root is not None:
            counts.to_csv(self.run_root / RESAMPLING_CSV)
        x = torch.from_numpy(np.concatenate([x_real, x_syn]))
        y = torch.from_numpy(np.concatenate([ts.targets, y_syn]).astype(np.int64))
        sampler = create_sampler(cfg.train.sampling.sampler, y.numpy(), cfg.train.seed)
        train_loader = DataLoader(TensorDataset(x, y), batch_size=cfg.train.batch_size, shuffle=sampler is None,
                                  sampler=sampler, drop_last=len(y) > cfg.train.batch_size)
        val_x = torch.from_numpy(np.asarray(feats[val_pos], dtype=np.float32))
        val_loader = DataLoader(TensorDataset(val_x, torch.from_numpy(data.targets()[val_pos].astype(np.int64))),
                                batch_size=cfg.eval.batch_size)
        head = FeatureHeadModule(module.model, module.loss_fn, cfg, len(data.dataset.class_names))
        head.cfg = module.cfg  # the stage's epochs and learning rate
        trainer = make_trainer(stage.epochs, [*callbacks, KeepBest(cfg.train.monitor, monitor_mode(cfg.train.monitor))])
        trainer.fit(head, train_loader, val_loader)
        ema = getattr(module, "ema", None)
        if ema is not None:  # the weight average restarts from the trained head
            ema.module.load_state_dict(module.model.state_dict())
        self.counts = counts
        return int(trainer.current_epoch)
