"""Callbacks: per-epoch history written as CSV (the learning curves come from it); the best epoch's weights kept."""

from __future__ import annotations

import copy
import time
from pathlib import Path

import lightning as L
import pandas as pd

HISTORY_COLUMNS = ("epoch", "train_loss", "train_bal_acc", "val_loss", "val_bal_acc", "val_auc", "lr", "seconds")


class HistoryWriter(L.Callback):
    """Appends one row per epoch to ``history.csv`` (rewritten each epoch, so a stopped run keeps its curve)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.rows: list[dict] = []
        self._start = 0.0
        self.epoch_offset = 0  # epochs of earlier fits (staged fine-tuning numbers epochs across stages)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Lightning runs validation inside the training epoch, so both train and val metrics are ready here.
        if not trainer.is_global_zero:
            return
        m = trainer.callback_metrics
        row = {"epoch": self.epoch_offset + trainer.current_epoch + 1}
        for key in HISTORY_COLUMNS[1:6]:
            row[key] = float(m[key]) if key in m else float("nan")
        row["lr"] = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else float("nan")
        row["seconds"] = time.perf_counter() - self._start
        self.rows.append(row)
        pd.DataFrame(self.rows, columns=list(HISTORY_COLUMNS)).to_csv(self.path, index=False)

    def state_dict(self) -> dict:
        """Saved in full checkpoints: a resumed run keeps the rows up to its checkpoint and rewrites the rest."""
        return {"rows": [dict(r) for r in self.rows], "epoch_offset": self.epoch_offset}

    def load_state_dict(self, state_dict: dict) -> None:
        self.rows = [dict(r) for r in state_dict.get("rows", [])]
        self.epoch_offset = int(state_dict.get("epoch_offset", 0))


class KeepBest(L.Callback):
    """Remembers the weights of the best validation epoch and restores them when fitting ends."""

    def __init__(self, monitor: str, mode: str) -> None:
        self.monitor, self.mode = monitor, mode
        self.best: float | None = None
        self.state: dict | None = None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            return
        v = float(value)
        if self.best is None or (v > self.best if self.mode == "max" else v < self.best):
            self.best, self.state = v, copy.deepcopy(pl_module.model.state_dict())

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.state is not None:
            pl_module.model.load_state_dict(self.state)
