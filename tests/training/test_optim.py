"""Every registered optimizer and scheduler builds and steps; learning-rate schedules follow their formulas; RMSprop,
Schedule-Free AdamW (train/eval switch inside the Lightning loop), ReduceLROnPlateau with warm-up."""

from __future__ import annotations

import itertools
import math

import lightning as L
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lesionlab.config import ModelConfig, OptimizerConfig, ScheduleConfig, TrainConfig, load_config
from lesionlab.models.classifier import create_model
from lesionlab.registry import UnknownNameError
from lesionlab.training.losses import create_loss
from lesionlab.training.module import LesionModule
from lesionlab.training.optim import (
    OPTIMIZERS,
    SCHEDULERS,
    LinearWarmup,
    create_optimizer,
    create_scheduler,
    has_mode_switch,
    lightning_schedulers,
    set_optimizer_mode,
)


def tiny_problem() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    return nn.Linear(4, 3), torch.randn(16, 4), torch.randint(0, 3, (16,))


@pytest.mark.parametrize("optimizer", OPTIMIZERS.names())
@pytest.mark.parametrize("scheduler", SCHEDULERS.names())
def test_build_and_step(optimizer: str, scheduler: str) -> None:
    model, x, y = tiny_problem()
    before = [p.detach().clone() for p in model.parameters()]
    opt = create_optimizer(optimizer, model.parameters(), lr=0.05, weight_decay=0.01)
    sched = create_scheduler(scheduler, opt, total_steps=20, warmup_steps=3)
    set_optimizer_mode(opt, train=True)  # Schedule-Free needs its train mode; a no-op for the others
    losses, lrs = [], []
    for _ in range(20):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        if isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
            sched.step(loss.item())
        elif sched is not None:
            sched.step()
        losses.append(loss.item())
        lrs.append(opt.param_groups[0]["lr"])
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert losses[-1] < losses[0]
    assert all(math.isfinite(lr) and lr >= 0 for lr in lrs)


@pytest.mark.parametrize(("optimizer", "cls", "extra"), [
    ("adamw", torch.optim.AdamW, {}),
    ("adam", torch.optim.Adam, {}),
    ("sgd", torch.optim.SGD, {"momentum": 0.9, "nesterov": True}),
])
def test_optimizer_settings(optimizer: str, cls: type, extra: dict) -> None:
    opt = create_optimizer(optimizer, nn.Linear(2, 2).parameters(), lr=0.1, weight_decay=0.02)
    assert type(opt) is cls
    group = opt.param_groups[0]
    assert (group["lr"], group["weight_decay"]) == (0.1, 0.02)
    assert all(group[k] == v for k, v in extra.items())


BASE_LR = 0.1


def lr_trace(scheduler: str, total: int, warmup: int) -> list[float]:
    """Learning rate used at steps 0 .. total-1."""
    opt = create_optimizer("sgd", nn.Linear(2, 2).parameters(), lr=BASE_LR, weight_decay=0.0)
    sched = create_scheduler(scheduler, opt, total_steps=total, warmup_steps=warmup)
    trace = []
    for _ in range(total):
        trace.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return trace


def cosine_factor(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    p = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * p))


@pytest.mark.parametrize(("total", "warmup"), [(10, 2), (20, 0), (7, 3)])
def test_cosine_schedule(total: int, warmup: int) -> None:
    trace = lr_trace("cosine", total, warmup)
    assert trace == pytest.approx([BASE_LR * cosine_factor(s, total, warmup) for s in range(total)])
    if warmup:
        assert trace[0] == pytest.approx(BASE_LR / warmup)
        assert trace[warmup] == pytest.approx(BASE_LR)  # the peak right after warm-up
    assert trace[-1] < trace[warmup]


@pytest.mark.parametrize(("total", "warmup", "expected"), [
    (5, 2, [0.5, 1, 1, 1, 1]),
    (4, 0, [1, 1, 1, 1]),
    (6, 4, [0.25, 0.5, 0.75, 1, 1, 1]),
])
def test_constant_schedule(total: int, warmup: int, expected: list[float]) -> None:
    assert lr_trace("constant", total, warmup) == pytest.approx([BASE_LR * f for f in expected])


@pytest.mark.parametrize(("total", "warmup"), [(20, 4), (40, 0), (10, 10)])
def test_onecycle_schedule(total: int, warmup: int) -> None:
    trace = lr_trace("onecycle", total, warmup)
    assert trace[0] == pytest.approx(BASE_LR / 25)  # div_factor
    assert max(trace) == pytest.approx(BASE_LR, rel=0.05)
    peak = trace.index(max(trace))
    assert all(a <= b + 1e-12 for a, b in itertools.pairwise(trace[: peak + 1]))  # rises to the peak
    assert all(a >= b - 1e-12 for a, b in itertools.pairwise(trace[peak:]))  # then only falls
    assert trace[-1] < BASE_LR / 25


@pytest.mark.parametrize(("factory", "name", "valid", "closest"), [
    (lambda n: create_optimizer(n, nn.Linear(2, 2).parameters(), lr=0.1, weight_decay=0), "adamx",
     "adam, adamw, rmsprop", "adam"),
    (lambda n: create_optimizer(n, nn.Linear(2, 2).parameters(), lr=0.1, weight_decay=0), "lamb",
     "adam, adamw, rmsprop", None),
    (lambda n: create_scheduler(n, torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1), 10, 0), "cosin",
     "constant, cosine, onecycle", "cosine"),
    (lambda n: create_scheduler(n, torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1), 10, 0), "step",
     "constant, cosine, onecycle", None),
])
def test_unknown_names_list_valid_ones(factory, name: str, valid: str, closest: str | None) -> None:
    with pytest.raises(UnknownNameError) as info:
        factory(name)
    assert valid in str(info.value)
    if closest:
        assert f"Did you mean {closest!r}" in str(info.value)


@pytest.mark.parametrize("name,cls,kwargs", [
    ("adamw", torch.optim.AdamW, {}), ("adam", torch.optim.Adam, {}),
    ("sgd", torch.optim.SGD, {"momentum": 0.9, "nesterov": True})])
def test_fused_kernels_on_cpu_match_the_loop_implementation(name: str, cls: type, kwargs: dict) -> None:
    model, x, y = tiny_problem()
    reference = nn.Linear(4, 3)
    reference.load_state_dict(model.state_dict())
    fused = create_optimizer(name, model.parameters(), lr=0.05, weight_decay=0.01)
    loop = cls(reference.parameters(), lr=0.05, weight_decay=0.01, foreach=False, **kwargs)
    assert fused.defaults["fused"] is True  # the CPU has fused kernels for Adam, AdamW and SGD
    for _ in range(10):
        for m, opt in ((model, fused), (reference, loop)):
            opt.zero_grad()
            nn.functional.cross_entropy(m(x), y).backward()
            opt.step()
    for a, b in zip(model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_fused_falls_back_where_no_kernel_exists() -> None:
    for param in (nn.Parameter(torch.zeros(3, device="meta")), nn.Parameter(torch.zeros(3).to_sparse()),
                  nn.Parameter(torch.zeros(3, dtype=torch.complex64))):
        opt = create_optimizer("adamw", [param], lr=0.1, weight_decay=0.0)
        assert not opt.defaults.get("fused")


TRAINER = {"accelerator": "cpu", "logger": False, "enable_progress_bar": False, "enable_model_summary": False,
           "num_sanity_val_steps": 0, "enable_checkpointing": False}


def test_rmsprop_settings() -> None:
    opt = create_optimizer("rmsprop", nn.Linear(2, 2).parameters(), lr=0.01, weight_decay=0.001)
    assert type(opt) is torch.optim.RMSprop
    g = opt.param_groups[0]
    assert (g["lr"], g["weight_decay"], g["momentum"], g["alpha"]) == (0.01, 0.001, 0.9, 0.9)


def test_schedulefree_mode_switch_changes_the_weights() -> None:
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    opt = create_optimizer("schedulefree-adamw", model.parameters(), lr=0.05, weight_decay=0.0)
    assert has_mode_switch(opt) and not has_mode_switch(torch.optim.SGD(model.parameters(), lr=0.1))
    set_optimizer_mode(opt, train=True)
    x, y = torch.randn(32, 4), torch.randint(0, 3, (32,))
    for _ in range(10):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    y_weights = model.weight.detach().clone()
    set_optimizer_mode(opt, train=False)
    x_weights = model.weight.detach().clone()
    assert not torch.equal(y_weights, x_weights)  # eval mode swaps in the averaged sequence
    set_optimizer_mode(opt, train=True)
    torch.testing.assert_close(model.weight.detach(), y_weights)  # and back
    set_optimizer_mode(torch.optim.SGD(model.parameters(), lr=0.1), train=False)  # a no-op for the others


def tiny_loaders() -> tuple[DataLoader, DataLoader]:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (40, 3, 16, 16), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 3, (40,), generator=g)
    return (DataLoader(TensorDataset(x[:32], y[:32]), batch_size=8, drop_last=True),
            DataLoader(TensorDataset(x[32:], y[32:]), batch_size=8))


def test_module_switches_schedulefree_with_the_loop() -> None:
    torch.manual_seed(0)
    cfg = TrainConfig(epochs=2, optimizer=OptimizerConfig("schedulefree-adamw", lr=0.01),
                      schedule=ScheduleConfig("constant", warmup_epochs=0))
    module = LesionModule(create_model(ModelConfig(backbone="tiny-resnet"), 3), create_loss("ce"), cfg, 3,
                          (0.5,) * 3, (0.25,) * 3)
    assert module.ema is None  # Schedule-Free averages its own weights
    seen = []

    class Spy(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            seen.append(("train", trainer.optimizers[0].param_groups[0]["train_mode"]))

        def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
            seen.append(("val", trainer.optimizers[0].param_groups[0]["train_mode"]))

    trainer = L.Trainer(max_epochs=2, callbacks=[Spy()], **TRAINER)
    trainer.fit(module, *tiny_loaders())
    assert {mode for phase, mode in seen if phase == "train"} == {True}
    assert {mode for phase, mode in seen if phase == "val"} == {False}
    assert trainer.optimizers[0].param_groups[0]["train_mode"] is False  # fit ends on the averaged weights


def test_plateau_reduces_on_the_monitored_metric_after_warmup() -> None:
    param = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=1.0)
    configs = lightning_schedulers("plateau", opt, total_steps=100, warmup_steps=4, monitor="val_bal_acc", mode="max",
                                   factor=0.5, patience=1)
    warm, plateau = configs
    assert isinstance(warm["scheduler"], LinearWarmup) and warm["interval"] == "step"
    assert plateau["interval"] == "epoch" and plateau["monitor"] == "val_bal_acc"
    lrs = []
    for _ in range(6):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        warm["scheduler"].step()
    assert lrs == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0, 1.0])
    for metric in (0.5, 0.6, 0.6, 0.6, 0.6):  # improves once, then stalls
        plateau["scheduler"].step(metric)
        warm["scheduler"].step()  # the warm-up must not undo the reduction
    assert opt.param_groups[0]["lr"] == pytest.approx(0.5)  # reduced once (2 stalled epochs > patience 1)


def test_plateau_inside_lightning() -> None:
    torch.manual_seed(0)
    cfg = TrainConfig(epochs=4, optimizer=OptimizerConfig("sgd", lr=0.01), ema_decay=0, monitor="val_loss",
                      schedule=ScheduleConfig("plateau", warmup_epochs=0, plateau_patience=0, plateau_factor=0.1))
    module = LesionModule(create_model(ModelConfig(backbone="tiny-resnet"), 3), create_loss("ce"), cfg, 3,
                          (0.5,) * 3, (0.25,) * 3)
    lrs = []

    class Spy(L.Callback):
        def on_train_epoch_start(self, trainer, pl_module) -> None:
            lrs.append(trainer.optimizers[0].param_groups[0]["lr"])

    L.Trainer(max_epochs=4, callbacks=[Spy()], **TRAINER).fit(module, *tiny_loaders())
    assert lrs[0] == pytest.approx(0.01)
    assert all(b in (pytest.approx(a), pytest.approx(a * 0.1)) for a, b in itertools.pairwise(lrs))


def test_names_selectable_from_config() -> None:
    cfg = load_config(None, ["train.optimizer.name=schedulefree-adamw", "train.schedule.name=plateau",
                             "train.schedule.plateau_factor=0.2", "train.schedule.plateau_patience=4"])
    assert (cfg.train.optimizer.name, cfg.train.schedule.name, cfg.train.schedule.plateau_factor) == (
        "schedulefree-adamw", "plateau", 0.2)
    sched = create_scheduler("plateau", torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1), 10, 0,
                             factor=0.2, patience=4)
    assert (sched.factor, sched.patience) == (0.2, 4)
