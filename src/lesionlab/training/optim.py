"""Optimizers and learning-rate schedules, registered by name.

Schedule-Free AdamW (Defazio et al. 2024, the ``schedulefree`` package) keeps two weight sequences and must be
switched with ``optimizer.train()`` / ``optimizer.eval()``; :func:`set_optimizer_mode` does that for any optimizer
that has the switch, and :class:`~lesionlab.training.module.LesionModule` calls it around training and validation.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, ReduceLROnPlateau

from lesionlab.registry import Registry

logger = logging.getLogger(__name__)

OPTIMIZERS: Registry[Callable[..., torch.optim.Optimizer]] = Registry("optimizer")
SCHEDULERS: Registry[Callable[..., LRScheduler | None]] = Registry("scheduler")


_FUSED_DEVICES = frozenset({"cpu", "cuda", "xpu", "mps"})


def fused_if_possible(cls: type[torch.optim.Optimizer], params: Iterable, **kwargs: Any) -> torch.optim.Optimizer:
    """``cls(params, fused=True, ...)``: one multi-tensor kernel per step instead of a Python loop over tensors
    (AdamW's step on resnet10t: 12 ms → 2 ms on the 2-core CPU). The default implementation where a parameter's
    device, dtype or layout has no fused kernel."""
    params = [{**g, "params": list(g["params"])} if isinstance(g, dict) else g for g in params]
    tensors = [t for g in params for t in (g["params"] if isinstance(g, dict) else [g])]
    fused = all(t.is_floating_point() and t.layout == torch.strided and t.device.type in _FUSED_DEVICES
                for t in tensors)
    return cls(params, fused=True, **kwargs) if fused else cls(params, **kwargs)


@OPTIMIZERS.register("adamw", help="AdamW (decoupled weight decay)")
def adamw(params: Iterable, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    return fused_if_possible(torch.optim.AdamW, params, lr=lr, weight_decay=weight_decay)


@OPTIMIZERS.register("adam", help="Adam (L2 weight decay)")
def adam(params: Iterable, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    return fused_if_possible(torch.optim.Adam, params, lr=lr, weight_decay=weight_decay)


@OPTIMIZERS.register("sgd", help="SGD with Nesterov momentum 0.9")
def sgd(params: Iterable, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    return fused_if_possible(torch.optim.SGD, params, lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)


@OPTIMIZERS.register("rmsprop", help="RMSprop (alpha 0.9, momentum 0.9, eps 1e-3 as in the TF/Keras recipes)")
def rmsprop(params: Iterable, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    return torch.optim.RMSprop(params, lr=lr, alpha=0.9, eps=1e-3, momentum=0.9, weight_decay=weight_decay)


@OPTIMIZERS.register("schedulefree-adamw",
                     help="Schedule-Free AdamW (schedulefree package; pair with scheduler=constant, no EMA needed)")
def schedulefree_adamw(params: Iterable, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    import schedulefree

    return schedulefree.AdamWScheduleFree(params, lr=lr, weight_decay=weight_decay)


#: Optimizers that average their own weights (Schedule-Free): the weight EMA is left off with them.
SELF_AVERAGING = frozenset({"schedulefree-adamw"})


def has_mode_switch(optimizer: Any) -> bool:
    """True for optimizers that keep separate train/eval weights (the Schedule-Free family)."""
    opt = getattr(optimizer, "optimizer", optimizer)  # unwrap Lightning's LightningOptimizer
    return callable(getattr(opt, "train", None)) and callable(getattr(opt, "eval", None))


def set_optimizer_mode(optimizer: Any, train: bool) -> None:
    """``optimizer.train()`` / ``.eval()`` where the optimizer has the switch; a no-op for the others."""
    if has_mode_switch(optimizer):
        opt = getattr(optimizer, "optimizer", optimizer)
        opt.train() if train else opt.eval()


class OptimizerModeHooks:
    """LightningModule mix-in: Schedule-Free optimizers train on one weight sequence and evaluate another, so
    switch them with the loop (a no-op for every other optimizer)."""

    trainer: Any  # the LightningModule's

    def on_train_epoch_start(self) -> None:
        for opt in self.trainer.optimizers:
            set_optimizer_mode(opt, True)

    def on_validation_epoch_start(self) -> None:
        for opt in self.trainer.optimizers:
            set_optimizer_mode(opt, False)

    def on_fit_end(self) -> None:
        for opt in self.trainer.optimizers:
            set_optimizer_mode(opt, False)


def _warmup_then(total_steps: int, warmup_steps: int, after: Callable[[float], float]) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if warmup_steps and step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return after(min(1.0, progress))

    return factor


@SCHEDULERS.register("cosine", help="linear warm-up, then cosine decay to 1% of the peak")
def cosine(opt: torch.optim.Optimizer, total_steps: int, warmup_steps: int, **_: Any) -> LRScheduler:
    def decay(p: float) -> float:
        return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * p))

    return LambdaLR(opt, _warmup_then(total_steps, warmup_steps, decay))


@SCHEDULERS.register("onecycle", help="one-cycle: warm-up to the peak, then cosine annealing to ~0")
def onecycle(opt: torch.optim.Optimizer, total_steps: int, warmup_steps: int, **_: Any) -> LRScheduler:
    total = max(total_steps, 4)  # OneCycleLR divides by (pct * total - 1): keep both phases at least one step long
    pct = min(0.5, max(warmup_steps / total, 0.05, 2.0 / total))
    return torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=[g["lr"] for g in opt.param_groups], total_steps=total, pct_start=pct,
        anneal_strategy="cos", div_factor=25.0, final_div_factor=1e3)


@SCHEDULERS.register("constant", help="constant learning rate after an optional warm-up")
def constant(opt: torch.optim.Optimizer, total_steps: int, warmup_steps: int, **_: Any) -> LRScheduler:
    return LambdaLR(opt, _warmup_then(total_steps, warmup_steps, lambda p: 1.0))


@SCHEDULERS.register("plateau", help="ReduceLROnPlateau on the monitored metric (factor, patience configurable)")
def plateau(opt: torch.optim.Optimizer, total_steps: int, warmup_steps: int, *, mode: str = "max",
            factor: float = 0.5, patience: int = 2, min_lr: float = 1e-6, **_: Any) -> ReduceLROnPlateau:
    """Stepped once per epoch with the monitored validation metric; warm-up comes from :class:`LinearWarmup`."""
    return ReduceLROnPlateau(opt, mode=mode, factor=factor, patience=patience, min_lr=min_lr)


class LinearWarmup(LRScheduler):
    """Linear warm-up over ``warmup_steps`` steps, after which it leaves the learning rate alone.

    Used in front of :class:`ReduceLROnPlateau`, whose reductions a ``LambdaLR`` would overwrite.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, warmup_steps: int) -> None:
        self.warmup_steps = max(1, int(warmup_steps))
        super().__init__(optimizer)

    def get_lr(self) -> list[float]:
        step = self.last_epoch
        if step < self.warmup_steps:
            return [base * (step + 1) / self.warmup_steps for base in self.base_lrs]
        if step == self.warmup_steps:
            return list(self.base_lrs)
        return [group["lr"] for group in self.optimizer.param_groups]


def create_optimizer(name: str, params: Iterable, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    return OPTIMIZERS.get(name)(params, lr=lr, weight_decay=weight_decay)


def create_scheduler(name: str, opt: torch.optim.Optimizer, total_steps: int, warmup_steps: int,
                     **options: Any) -> LRScheduler | None:
    """Build a registered schedule; ``options`` (``mode``, ``factor``, ``patience``) go to ``plateau``."""
    return SCHEDULERS.get(name)(opt, total_steps=total_steps, warmup_steps=warmup_steps, **options)


def lightning_schedulers(name: str, opt: torch.optim.Optimizer, total_steps: int, warmup_steps: int, *,
                         monitor: str, mode: str, factor: float = 0.5, patience: int = 2) -> list[dict]:
    """Lightning ``lr_scheduler`` configs: per-step schedules, or warm-up + per-epoch ``ReduceLROnPlateau``."""
    sched = create_scheduler(name, opt, total_steps, warmup_steps, mode=mode, factor=factor, patience=patience)
    if sched is None:
        return []
    if not isinstance(sched, ReduceLROnPlateau):
        return [{"scheduler": sched, "interval": "step"}]
    configs = [{"scheduler": LinearWarmup(opt, warmup_steps), "interval": "step"}] if warmup_steps else []
    return [*configs, {"scheduler": sched, "interval": "epoch", "monitor": monitor, "strict": True}]
