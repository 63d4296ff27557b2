"""``lesionlab train --resume RUN_DIR``: continue a killed run from ``checkpoints/last.ckpt``.

Lightning's full checkpoint holds the weights (with the EMA copy, a sub-module), the optimizer, the LR schedulers, the
loop counters and every callback's state (the history rows, the best checkpoint's score, early stopping).
:class:`ResumeState` adds what it does not: the random number generators (Python, NumPy, torch CPU and CUDA, the
module's batch-augmentation generator, samplers' own generators), the per-epoch LR-scheduler step that follows the
checkpoint and an early stop that had already been decided. With them a resumed CPU run ends with the same
metrics as an uninterrupted one.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.optim.lr_scheduler import ReduceLROnPlateau

from lesionlab.config import ConfigError, ExperimentConfig, load_run_config

STATE_KEY = "lesionlab_resume"
#: Overrides a resumed run accepts: where and how it runs, never what it computes.
RESUME_OVERRIDES = ("train.progress", "train.trainer.devices", "train.trainer.num_nodes", "train.trainer.strategy",
                    "train.trainer.accelerator", "train.trainer.num_workers", "data.cache_dir")


class ResumeError(ConfigError):
    """The run directory cannot be resumed (no or unreadable ``last.ckpt``, a finished run, a staged run)."""


def _generator_state(gen: torch.Generator | None) -> torch.Tensor | None:
    return None if gen is None else gen.get_state()


def _numpy_state() -> tuple:
    """NumPy's global state in plain types (Lightning loads checkpoints with ``weights_only=True``)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return str(name), keys.tolist(), int(pos), int(has_gauss), float(cached)


def _sampler_generator(trainer: L.Trainer) -> torch.Generator | None:
    loader = trainer.train_dataloader
    sampler = getattr(loader, "sampler", None)
    return getattr(sampler, "generator", None)


class ResumeState(L.Callback):
    """Stores RNG states (and the pending epoch-end scheduler step) in full checkpoints; restores them on resume
    at the start of the first resumed epoch, where the uninterrupted run would have had the same states."""

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if torch.is_tensor(v) and v.numel() == 1}
        checkpoint[STATE_KEY] = {
            "python": random.getstate(), "numpy": _numpy_state(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "augment": _generator_state(getattr(pl_module, "augment_rng", None)),
            "sampler": _generator_state(_sampler_generator(trainer)),
            "metrics": metrics, "should_stop": bool(trainer.should_stop),
        }

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        self._pending = checkpoint.get(STATE_KEY)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._pending is not None and self._pending["should_stop"]:
            trainer.should_stop = True  # early stopping had ended the run when the checkpoint was written

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        state, self._pending = self._pending, None
        if state is None:
            return
        _step_epoch_schedulers(trainer, state["metrics"])  # the checkpoint precedes the epoch-end scheduler step
        random.setstate(state["python"])
        name, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
        torch.set_rng_state(state["torch"])
        if state["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])
        for gen, saved in ((getattr(pl_module, "augment_rng", None), state["augment"]),
                           (_sampler_generator(trainer), state["sampler"])):
            if gen is not None and saved is not None:
                gen.set_state(saved)
        # On resume Lightning made the training iterator before this hook (the uninterrupted run makes it after), and
        # making it draws from the global RNG (the loader's base seed): make it again, from the restored state.
        fetcher = getattr(trainer.fit_loop, "_data_fetcher", None)
        if fetcher is not None:
            iter(fetcher)


def _step_epoch_schedulers(trainer: L.Trainer, metrics: dict[str, float]) -> None:
    """The ``ReduceLROnPlateau`` step Lightning runs after ``on_train_epoch_end``, i.e. after the checkpoint (other
    per-epoch schedulers step before validation and are in the checkpoint already)."""
    for config in trainer.lr_scheduler_configs:
        if (config.interval == "epoch" and isinstance(config.scheduler, ReduceLROnPlateau)
                and trainer.current_epoch % config.frequency == 0 and config.monitor in metrics):
            config.scheduler.step(metrics[config.monitor])


def last_checkpoint_path(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints" / "last.ckpt"


def drop_resume_state(run_dir: Path) -> None:
    """A finished run cannot be resumed: its ``last.ckpt`` (optimizer state included) only takes disk space."""
    last_checkpoint_path(run_dir).unlink(missing_ok=True)


def resume_config(run_dir: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> ExperimentConfig:
    """The run's own ``config.yaml``; only the :data:`RESUME_OVERRIDES` keys may be changed."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise ResumeError(f"cannot resume {run_dir}: no config.yaml (not a LesionLab run directory)")
    bad = [o for o in overrides if o.split("=", 1)[0].strip() not in RESUME_OVERRIDES]
    if bad:
        raise ResumeError(f"--resume continues {run_dir} with its own config.yaml; {bad} would change the run "
                          f"(allowed overrides: {', '.join(RESUME_OVERRIDES)})")
    return load_run_config(run_dir / "config.yaml", overrides=list(overrides))


def check_resumable(run_dir: str | Path, cfg: ExperimentConfig) -> Path:
    """``last.ckpt`` of an unfinished, single-fit run, checked to be a readable full checkpoint."""
    run_dir = Path(run_dir)
    done = [n for n in ("metrics.json", "val_metrics.json") if (run_dir / n).is_file()]
    if done:
        raise ResumeError(f"cannot resume {run_dir}: the run has finished ({done[0]} exists)")
    sampling = cfg.train.sampling
    if cfg.train.stages or (sampling.oversample == "smote" and sampling.smote_space == "feature") or (
            cfg.model.freeze_backbone and cfg.model.feature_cache):
        raise ResumeError(f"cannot resume {run_dir}: staged fine-tuning (train.stages), feature-space SMOTE and "
                          "cached-feature head runs train in several fits and are not resumable; start them again")
    path = last_checkpoint_path(run_dir)
    if not path.is_file():
        raise ResumeError(f"cannot resume {run_dir}: {path} is missing (train.trainer.save_last=false, or the run "
                          "stopped before its first epoch ended)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # truncated or not a torch file: any loader error means the same to the user
        raise ResumeError(f"cannot resume {run_dir}: {path} is unreadable ({type(exc).__name__}: {exc})") from None
    missing = [k for k in ("state_dict", "optimizer_states", "loops", STATE_KEY) if k not in ckpt]
    if missing:
        raise ResumeError(f"cannot resume {run_dir}: {path} is not a full resume checkpoint (lacks {missing})")
    return path


__all__ = ["RESUME_OVERRIDES", "ResumeError", "ResumeState", "check_resumable", "drop_resume_state",
           "last_checkpoint_path", "resume_config"]
