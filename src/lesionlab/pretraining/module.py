"""The VAE LightningModule (uint8 batches in, labels ignored) and the callback that records its loss curves."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import pandas as pd
import torch

from lesionlab.config import TrainConfig
from lesionlab.config.pretraining import VAEConfig
from lesionlab.data.transforms import to_model_input
from lesionlab.pretraining.losses import ELBOTerms, create_beta_schedule, vae_loss
from lesionlab.pretraining.vae import ConvNeXtVAE
from lesionlab.training.optim import OptimizerModeHooks, create_optimizer, lightning_schedulers

STEP_COLUMNS = ("step", "epoch", "beta", "loss", "recon", "kl", "lr")
EPOCH_COLUMNS = ("epoch", "beta", "train_loss", "train_recon", "train_kl", "val_loss", "val_recon", "val_kl",
                 "val_elbo", "lr", "seconds")


class VAEModule(OptimizerModeHooks, L.LightningModule):
    """Optimises ``recon + β(step)·KL``. The encoder sees the classifier's normalisation (``mean``/``std``) so the
    saved encoder gets, in the model zoo, exactly the inputs it was trained on; targets are the pixels in ``[0, 1]``.
    """

    def __init__(self, vae: ConvNeXtVAE, vae_cfg: VAEConfig, train_cfg: TrainConfig, mean: Sequence[float],
                 std: Sequence[float]) -> None:
        super().__init__()
        self.vae = vae
        self.vae_cfg = vae_cfg
        self.cfg = train_cfg
        self.mean, self.std = tuple(mean), tuple(std)
        self._beta = create_beta_schedule(vae_cfg.beta_schedule, beta=vae_cfg.beta, total_steps=1)
        self.last_step: dict[str, float] = {}

    def on_fit_start(self) -> None:
        total = max(1, int(self.trainer.estimated_stepping_batches))
        per_epoch = max(1, total // max(1, self.trainer.max_epochs or 1))
        c = self.vae_cfg
        self._beta = create_beta_schedule(c.beta_schedule, beta=c.beta, total_steps=total,
                                          warmup_steps=round(c.warmup_epochs * per_epoch), cycles=c.cycles,
                                          ratio=c.cycle_ratio)

    def current_beta(self) -> float:
        """β at the current optimisation step."""
        return self._beta(int(self.global_step))

    def terms(self, images: torch.Tensor, beta: float, sample: bool = True) -> ELBOTerms:
        """The loss terms of a uint8 batch ``(B, 3, H, W)``."""
        target = images.float() / 255.0
        logits, mu, logvar = self.vae(to_model_input(images, self.mean, self.std), sample=sample)
        return vae_loss(logits, target, mu, logvar, beta, self.vae_cfg.reconstruction)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        images = batch[0]  # the second element (a placeholder target) is never read
        t = self.terms(images, self.current_beta())
        n = len(images)
        self.log("beta", t.beta, on_step=True, on_epoch=False, prog_bar=True, batch_size=n)
        for key, value in (("train_loss", t.loss), ("train_recon", t.recon), ("train_kl", t.kl)):
            self.log(key, value, on_step=False, on_epoch=True, prog_bar=key == "train_loss", batch_size=n)
        self.last_step = {"step": int(self.global_step), "beta": t.beta, "loss": float(t.loss.detach()),
                          "recon": float(t.recon.detach()), "kl": float(t.kl.detach())}
        return t.loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        images = batch[0]
        t = self.terms(images, self.current_beta())
        n = len(images)
        self.log("val_loss", t.loss, on_epoch=True, prog_bar=True, batch_size=n)
        self.log("val_recon", t.recon, on_epoch=True, batch_size=n)
        self.log("val_kl", t.kl, on_epoch=True, batch_size=n)
        self.log("val_elbo", t.recon + t.kl, on_epoch=True, batch_size=n)  # β = 1: the negative ELBO

    def configure_optimizers(self):
        o, s = self.cfg.optimizer, self.cfg.schedule
        opt = create_optimizer(o.name, self.vae.parameters(), o.lr, o.weight_decay)
        total = int(self.trainer.estimated_stepping_batches)
        per_epoch = max(1, total // max(1, self.trainer.max_epochs or 1))
        scheds = lightning_schedulers(s.name, opt, total, int(s.warmup_epochs * per_epoch),
                                      monitor="val_loss", mode="min", factor=s.plateau_factor,
                                      patience=s.plateau_patience)
        return ([opt], scheds) if scheds else opt


class VAEHistory(L.Callback):
    """Writes ``steps.csv`` (β, loss, reconstruction and KL of every step) and ``history.csv`` (per epoch)."""

    def __init__(self, steps_path: str | Path, epochs_path: str | Path) -> None:
        self.steps_path, self.epochs_path = Path(steps_path), Path(epochs_path)
        self.steps: list[dict] = []
        self.epochs: list[dict] = []
        self._start = 0.0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: object, batch: object,
                           batch_idx: int) -> None:
        lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else float("nan")
        self.steps.append({"epoch": trainer.current_epoch + 1, **pl_module.last_step,
                           "lr": lr})

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        m = trainer.callback_metrics
        row: dict = {"epoch": trainer.current_epoch + 1, "beta": pl_module.last_step.get("beta", float("nan"))}
        for key in EPOCH_COLUMNS[2:9]:
            row[key] = float(m[key]) if key in m else float("nan")
        row["lr"] = self.steps[-1]["lr"] if self.steps else float("nan")
        row["seconds"] = time.perf_counter() - self._start
        self.epochs.append(row)
        pd.DataFrame(self.steps, columns=list(STEP_COLUMNS)).to_csv(self.steps_path, index=False)
        pd.DataFrame(self.epochs, columns=list(EPOCH_COLUMNS)).to_csv(self.epochs_path, index=False)
