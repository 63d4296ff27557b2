"""Staged fine-tuning: frozen layers (weights and BatchNorm statistics) stay bit-identical, weights carry over."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from lesionlab.config import (
    ConfigError,
    ModelConfig,
    OptimizerConfig,
    ScheduleConfig,
    StageConfig,
    TrainConfig,
    TrainerConfig,
)
from lesionlab.models.classifier import create_model
from lesionlab.registry import UnknownNameError
from lesionlab.training.callbacks import HistoryWriter
from lesionlab.training.losses import create_loss
from lesionlab.training.module import LesionModule
from lesionlab.training.staged import fit_stages, plan_stages
from lesionlab.training.trainer_factory import trainer_maker
from lesionlab.training.unfreeze import apply_unfreeze, backbone_groups

SGD, CONSTANT = OptimizerConfig("sgd"), ScheduleConfig("constant", warmup_epochs=0)
TRAINER = trainer_maker(TrainConfig(progress=False, trainer=TrainerConfig(accelerator="cpu", precision="32-true",
                                                                          logger=("none",))), None)


def loaders() -> tuple[DataLoader, DataLoader]:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (48, 3, 16, 16), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 3, (48,), generator=g)
    return (DataLoader(TensorDataset(x[:32], y[:32]), batch_size=8, shuffle=True, drop_last=True),
            DataLoader(TensorDataset(x[32:], y[32:]), batch_size=16))


def make_module(ema: float = 0.9) -> LesionModule:
    torch.manual_seed(0)
    model = create_model(ModelConfig(backbone="tiny-resnet", drop_rate=0.0), 3)
    cfg = TrainConfig(epochs=1, optimizer=OptimizerConfig("sgd", lr=0.05), schedule=CONSTANT, ema_decay=ema,
                      progress=False)
    return LesionModule(model, create_loss("ce"), cfg, 3, (0.5,) * 3, (0.25,) * 3)


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def changed(before: dict, after: dict, keys) -> set[str]:
    return {k for k in keys if not torch.equal(before[k], after[k])}


def float_keys(state: dict, prefix: str = "") -> list[str]:
    return [k for k, v in state.items() if k.startswith(prefix) and v.is_floating_point()]


def run_stage(module: LesionModule, unfreeze: str, history: HistoryWriter | None = None) -> list[dict]:
    train, val = loaders()
    cfg = TrainConfig(**{**module.cfg.__dict__, "stages": (StageConfig(epochs=2, lr=0.05, unfreeze=unfreeze),)})
    return fit_stages(module, train, val, cfg, callbacks=[history] if history else [], make_trainer=TRAINER)


def test_groups_come_from_timm() -> None:
    model = create_model(ModelConfig(backbone="tiny-resnet"), 3)
    groups = backbone_groups(model.backbone)
    assert sorted(groups) == list(range(len(groups))) and len(groups) >= 3  # stem, blocks...
    assert any(n.startswith("conv1") for n in groups[0])  # the stem comes first
    assert all(n.startswith("layer4") for n in groups[max(groups)])  # the last block group


def test_head_stage_freezes_backbone_bit_identically(tmp_path) -> None:
    module = make_module()
    before = snapshot(module.model)
    history = HistoryWriter(tmp_path / "history.csv")
    (summary,) = run_stage(module, "head", history)
    after = snapshot(module.model)
    backbone = [k for k in before if k.startswith("backbone.")]
    assert any("running_mean" in k for k in backbone)  # BatchNorm statistics are part of the check
    assert changed(before, after, backbone) == set()  # weights AND running statistics unchanged
    assert changed(before, after, float_keys(before, "head."))  # the head trained
    ema = snapshot(module.ema.module)
    assert changed(before, ema, [k for k in backbone if before[k].is_floating_point()]) == set()
    assert summary["frozen_params"] == sum(p.numel() for p in module.model.backbone.parameters())
    assert all(p.requires_grad for p in module.model.parameters())  # everything trainable again afterwards
    assert [r["epoch"] for r in history.rows] == [1, 2]


def test_last_stage_trains_only_the_last_group_and_head() -> None:
    module = make_module()
    run_stage(module, "head")
    before = snapshot(module.model)
    run_stage(module, "last")
    after = snapshot(module.model)
    groups = backbone_groups(module.model.backbone)
    last = max(groups)
    frozen_modules = {n.rsplit(".", 1)[0] for gid, names in groups.items() if gid != last for n in names}
    frozen_keys = [k for k in before if k.startswith("backbone.") and k[9:].rsplit(".", 1)[0] in frozen_modules]
    assert frozen_keys and changed(before, after, frozen_keys) == set()
    last_keys = [f"backbone.{n}" for n in groups[last]]
    assert changed(before, after, last_keys)  # the last block trained, starting from the carried-over weights
    assert changed(before, after, float_keys(before, "head."))


def test_all_stage_trains_everything_and_weights_carry_over(tmp_path) -> None:
    module = make_module(ema=0.0)
    history = HistoryWriter(tmp_path / "h.csv")
    train, val = loaders()
    stages = (StageConfig(1, 0.05, "head"), StageConfig(1, 0.02, "last"), StageConfig(1, 0.01, "all"))
    before, original = snapshot(module.model), module.cfg
    summaries = fit_stages(module, train, val, TrainConfig(stages=stages, optimizer=SGD, schedule=CONSTANT,
                                                           ema_decay=0),
                           callbacks=[history], make_trainer=TRAINER)
    after = snapshot(module.model)
    assert [s["unfreeze"] for s in summaries] == ["head", "last", "all"]
    assert summaries[0]["trainable_params"] < summaries[1]["trainable_params"] < summaries[2]["trainable_params"]
    assert summaries[2]["frozen_params"] == 0
    stem = [k for k in float_keys(before, "backbone.conv1")]
    assert changed(before, after, stem)  # only the "all" stage can have moved the stem
    assert [r["epoch"] for r in history.rows] == [1, 2, 3]  # epochs numbered across stages
    assert [r["lr"] for r in history.rows] == pytest.approx([0.05, 0.02, 0.01])  # each stage its own rate
    assert module.cfg is original  # the module's own config is restored


def test_unfreeze_levels_and_errors() -> None:
    model = create_model(ModelConfig(backbone="tiny-resnet"), 3)
    n_backbone = sum(p.numel() for p in model.backbone.parameters())
    assert apply_unfreeze(model, "head").frozen == n_backbone
    assert 0 < apply_unfreeze(model, "last").frozen < n_backbone
    assert apply_unfreeze(model, "all").frozen == 0
    with pytest.raises(UnknownNameError, match="all, head, last"):
        apply_unfreeze(model, "middle")
    with pytest.raises(UnknownNameError, match="all, head, last"):
        plan_stages(TrainConfig(stages=(StageConfig(1, 0.1, "top"),)))
    with pytest.raises(ConfigError, match="stages"):
        StageConfig(epochs=0)
    assert plan_stages(TrainConfig(epochs=3, optimizer=OptimizerConfig(lr=0.1))) == (StageConfig(3, 0.1, "all"),)


def test_stages_from_yaml(tmp_path) -> None:
    from lesionlab.config import load_config

    path = tmp_path / "s.yaml"
    path.write_text("train:\n  stages:\n    - {epochs: 2, lr: 1.0e-3, unfreeze: head}\n"
                    "    - {epochs: 1, lr: 1e-4, unfreeze: all}\n")
    cfg = load_config(path)
    assert cfg.train.stages == (StageConfig(2, 1e-3, "head"), StageConfig(1, 1e-4, "all"))
    assert np.isclose(load_config(path, ["train.stages=[{epochs: 1, lr: 0.5}]"]).train.stages[0].lr, 0.5)


def test_lightning_keeps_frozen_bn_in_eval_mode() -> None:
    module = make_module()
    modes = []

    class Spy(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            modes.append((pl_module.model.backbone.bn1.training, pl_module.model.head.training))

    train, val = loaders()
    cfg = TrainConfig(stages=(StageConfig(1, 0.05, "head"), StageConfig(1, 0.05, "all")), optimizer=SGD,
                      schedule=CONSTANT)
    fit_stages(module, train, val, cfg, callbacks=[Spy()], make_trainer=TRAINER)
    half = len(modes) // 2
    assert modes[:half] == [(False, True)] * half  # stage 1: frozen BN in eval, head in train mode
    assert modes[half:] == [(True, True)] * half  # stage 2: unfrozen BN back in train mode
