"""The one place a Lightning ``Trainer`` is made: devices, precision, progress bar, time budget, loggers and
checkpoints all come from :class:`~lesionlab.config.TrainConfig`, so train, staged fits, feature heads, distillation
and pretraining cannot drift apart."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import pandas as pd
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from lesionlab.config import TrainConfig
from lesionlab.training.loggers import create_loggers

#: ``(max_epochs, callbacks) -> Trainer``: what staged fits and feature-head trainers are given.
TrainerMaker = Callable[[int, Sequence[L.Callback]], L.Trainer]

BEST_CKPT = "best"
LAST_CKPT = "last"


def resolve_precision(requested: str, accelerator: str = "auto") -> str:
    """``auto`` → ``bf16-mixed`` on a CUDA GPU with bf16 or a CPU with AVX512-BF16/AMX (about 1.6x faster training
    here), else ``32-true``. Any explicit Lightning precision string is passed through."""
    if requested != "auto":
        return requested
    if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "bf16-mixed" if _cpu_has_bf16() else "32-true"


def _cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def monitor_mode(monitor: str) -> str:
    """``min`` for a loss, ``max`` for accuracy-like metrics."""
    return "min" if monitor.endswith("loss") else "max"


def best_epoch(history: pd.DataFrame, monitor: str) -> int:
    """The (first) epoch whose ``monitor`` is best: lowest for a loss, highest otherwise; 0 for an empty history."""
    values = history[monitor] if len(history) else None
    if values is None or values.isna().all():
        return 0
    row = values.idxmin() if monitor_mode(monitor) == "min" else values.idxmax()
    return int(history.loc[row, "epoch"])


def build_trainer(cfg: TrainConfig, run_root: Path | None, *, max_epochs: int, callbacks: Sequence[L.Callback] = (),
                  loggers: Sequence[Any] | None = None, **overrides: Any) -> L.Trainer:
    """A ``Trainer`` for ``cfg``; ``loggers`` default to ``cfg.trainer.logger`` under ``run_root`` (none without one).

    Checkpointing is on only when a :class:`ModelCheckpoint` is among ``callbacks`` (Lightning would otherwise add
    its own). ``overrides`` go to ``Trainer`` unchanged (tests: ``precision="32-true"``).
    """
    callbacks = list(callbacks)
    t = cfg.trainer
    if loggers is None:
        loggers = create_loggers(t.logger, run_root)
    kwargs: dict[str, Any] = dict(
        accelerator=t.accelerator, devices=t.devices, num_nodes=t.num_nodes, strategy=t.strategy,
        precision=resolve_precision(t.precision, t.accelerator), logger=list(loggers) or False,
        default_root_dir=run_root, enable_progress_bar=cfg.progress, enable_model_summary=False,
        num_sanity_val_steps=0, deterministic=False,
        enable_checkpointing=any(isinstance(c, ModelCheckpoint) for c in callbacks),
        max_time={"minutes": cfg.max_time_minutes} if cfg.max_time_minutes else None,
    )
    kwargs.update(overrides)
    return L.Trainer(max_epochs=max_epochs, callbacks=callbacks, **kwargs)


def trainer_maker(cfg: TrainConfig, run_root: Path | None, **overrides: Any) -> TrainerMaker:
    """:func:`build_trainer` bound to one run: the loggers are made once and shared by every stage's trainer."""
    loggers = create_loggers(cfg.trainer.logger, run_root)

    def make(max_epochs: int, callbacks: Sequence[L.Callback] = ()) -> L.Trainer:
        return build_trainer(cfg, run_root, max_epochs=max_epochs, callbacks=callbacks, loggers=loggers, **overrides)

    return make


def best_checkpoint(cfg: TrainConfig, directory: Path) -> ModelCheckpoint:
    """``best.ckpt``: the weights of the best ``cfg.monitor`` epoch (weights only, what the run ships)."""
    return ModelCheckpoint(dirpath=directory, filename=BEST_CKPT, monitor=cfg.monitor, mode=monitor_mode(cfg.monitor),
                           save_top_k=1, save_last=False, save_weights_only=True, enable_version_counter=False)


def last_checkpoint(directory: Path) -> ModelCheckpoint:
    """``last.ckpt``, rewritten at the end of every training epoch: the full state ``train --resume`` continues from
    (weights with the EMA copy, optimizer, LR schedulers, loops, callback states such as the history)."""
    return ModelCheckpoint(dirpath=directory, filename=LAST_CKPT, monitor=None, save_top_k=1,
                           save_weights_only=False, save_on_train_epoch_end=True, enable_version_counter=False)


__all__ = ["TrainerMaker", "best_checkpoint", "best_epoch", "build_trainer", "last_checkpoint", "monitor_mode",
           "resolve_precision", "trainer_maker"]
