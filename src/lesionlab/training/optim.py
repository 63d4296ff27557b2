"""Optimizers and learning-rate schedules, registered by name."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch.optim.lr_scheduler import LambdaLR, LRScheduler

from lesionlab.registry import Registry

OPTIMIZERS: Registry[Callable[..., torch.optim.Optimizer]] = Registry("optimizer")
SCHEDULERS: Registry[Callable[..., LRScheduler | None]] = Registry("scheduler")


@OPTIMIZERS.register("adamw", help="AdamW (decoupled weight decay)")
def adamw(params: Iterable, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


@OPTIMIZERS.register("adam", help="Adam (L2 weight decay)")
def adam(params: Iterable, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)


@OPTIMIZERS.register("sgd", help="SGD with Nesterov momentum 0.9")
def sgd(params: Iterable, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)


def _warmup_then(total_steps: int, warmup_steps: int, after: Callable[[float], float]) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if warmup_steps and step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return after(min(1.0, progress))

    return factor


@SCHEDULERS.register("cosine", help="linear warm-up, then cosine decay to 1% of the peak")
def cosine(opt: torch.optim.Optimizer, total_steps: int, warmup_steps: int) -> LRScheduler:
    def decay(p: float) -> float:
        return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * p))

    return LambdaLR(opt, _warmup_then(total_steps, warmup_steps, decay))


@SCHEDULERS.register("onecycle", help="one-cycle: warm-up to the peak, then cosine annealing to ~0")
def onecycle(opt: torch.optim.Optimizer, total_steps: int, warmup_steps: int) -> LRScheduler:
    pct = min(0.5, max(warmup_steps / max(1, total_steps), 0.05))
    return torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=[g["lr"] for g in opt.param_groups], total_steps=max(total_steps, 2), pct_start=pct,
        anneal_strategy="cos", div_factor=25.0, final_div_factor=1e3)


@SCHEDULERS.register("constant", help="constant learning rate after an optional warm-up")
def constant(opt: torch.optim.Optimizer, total_steps: int, warmup_steps: int) -> LRScheduler:
    return LambdaLR(opt, _warmup_then(total_steps, warmup_steps, lambda p: 1.0))


def create_optimizer(name: str, params: Iterable, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    return OPTIMIZERS.get(name)(params, lr=lr, weight_decay=weight_decay)


def create_scheduler(name: str, opt: torch.optim.Optimizer, total_steps: int, warmup_steps: int) -> LRScheduler | None:
    return SCHEDULERS.get(name)(opt, total_steps=total_steps, warmup_steps=warmup_steps)
