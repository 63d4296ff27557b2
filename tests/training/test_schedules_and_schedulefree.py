"""RMSprop, Schedule-Free AdamW (train/eval switch inside the Lightning loop), ReduceLROnPlateau with warm-up."""

from __future__ import annotations

import itertools

import lightning as L
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lesionlab.config import ModelConfig, OptimizerConfig, ScheduleConfig, TrainConfig, load_config
from lesionlab.models.classifier import create_model
from lesionlab.training.losses import create_loss
from lesionlab.training.module import LesionModule
from lesionlab.training.optim import (
    LinearWarmup,
    create_optimizer,
    create_scheduler,
    has_mode_switch,
    lightning_schedulers,
    set_optimizer_mode,
)

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
