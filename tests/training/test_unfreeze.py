"""Unfreeze levels on every backbone family of the zoo: ``last-block`` opens a real block (conv/linear weights of
the last block group), not just a trailing norm. Models are built on the meta device (no memory, no weights): the
test only inspects parameter names and sizes."""

from __future__ import annotations

import logging

import pytest
import torch

from lesionlab.config import ModelConfig, StageConfig, TrainConfig
from lesionlab.models.classifier import create_model
from lesionlab.registry import UnknownNameError
from lesionlab.training.staged import plan_stages
from lesionlab.training.unfreeze import LEVELS, UNFREEZE, apply_unfreeze, unfreeze_table

#: family → (zoo alias, prefix every parameter of the last block carries, prefixes allowed after it)
FAMILIES = {
    "resnet": ("resnet18", "layer4.", ()),
    "efficientnet": ("efficientnet-b0", "blocks.6.", ("conv_head.", "bn2.")),
    "convnext": ("convnext-tiny", "stages.3.", ("head.norm.",)),
    "densenet": ("densenet201", "features.denseblock4.", ("features.norm5.",)),
    "mobilenet": ("mobilenetv3-small", "blocks.5.", ("conv_head.",)),
    "vgg": ("vgg16", "features.28.", ("pre_logits.",)),
    "inception-resnet": ("inception-resnet-v2", "block8.", ("conv2d_7b.",)),
}


def _meta_model(alias: str, **kwargs: object):
    with torch.device("meta"):
        return create_model(ModelConfig(backbone=alias, **kwargs), num_classes=7)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_last_block_opens_a_real_block(family: str, caplog: pytest.LogCaptureFixture) -> None:
    alias, block, after = FAMILIES[family]
    model = _meta_model(alias)
    backbone = dict(model.backbone.named_parameters())
    with caplog.at_level(logging.WARNING, logger="lesionlab.training.unfreeze"):
        summary = apply_unfreeze(model, "last-block")
    opened = {n for n, p in model.backbone.named_parameters() if p.requires_grad}
    assert opened and all(n.startswith((block, *after)) for n in opened)
    assert {n for n in backbone if n.startswith(block)} <= opened  # the whole last block
    assert any(backbone[n].ndim == 4 for n in opened if n.startswith(block))  # with its convolutions
    assert summary.backbone_trainable == sum(backbone[n].numel() for n in opened)
    assert all(p.requires_grad for p in model.head.parameters())
    assert not caplog.records
    counts = unfreeze_table(model)
    head, total = counts["head"], counts["all"]
    assert head < counts["last-block"] < counts["last-2-blocks"] < total
    assert total == sum(p.numel() for p in model.parameters()) and all(p.requires_grad for p in model.parameters())


def test_last_is_an_alias_of_last_block_and_the_old_trap_is_gone() -> None:
    model = _meta_model("convnext-tiny")
    head = apply_unfreeze(model, "head").trainable
    assert apply_unfreeze(model, "last").trainable == apply_unfreeze(model, "last-block").trainable
    assert apply_unfreeze(model, "last-stage").trainable - head > 10_000_000  # stages.3, not the 1,536-param norm


def test_level_that_opens_only_a_norm_warns(caplog: pytest.LogCaptureFixture) -> None:
    model = _meta_model("convnext-tiny")
    UNFREEZE.add("test-norm-only", lambda b: {n for n, _ in b.named_parameters() if not n.startswith("head.norm")})
    try:
        with caplog.at_level(logging.WARNING, logger="lesionlab.training.unfreeze"):
            summary = apply_unfreeze(model, "test-norm-only")
    finally:
        UNFREEZE._items.pop("test-norm-only")
        UNFREEZE._help.pop("test-norm-only")
    assert summary.backbone_trainable == 1536
    assert "opens nothing beyond the head on ConvNeXt" in caplog.text


def test_attention_wrapper_groups_by_its_trunk() -> None:
    model = _meta_model("tiny-resnet", attention="soft")
    apply_unfreeze(model, "last-block")
    opened = {n for n, p in model.backbone.named_parameters() if p.requires_grad}
    assert any(n.startswith("trunk.layer4.") for n in opened)
    assert not any(n.startswith("trunk.layer3.") for n in opened)
    assert any(not n.startswith("trunk.") for n in opened)  # the attention block trains


def test_every_level_is_valid_in_a_config_without_extra_imports() -> None:
    assert set(LEVELS) | {"last", "last-stage"} == set(UNFREEZE.names())
    stages = tuple(StageConfig(unfreeze=level) for level in ("head", "last-stage", "last", "last-2-blocks", "all"))
    assert plan_stages(TrainConfig(stages=stages)) == stages
    with pytest.raises(UnknownNameError, match="Did you mean 'last-block'"):
        plan_stages(TrainConfig(stages=(StageConfig(unfreeze="last-blok"),)))


def test_levels_need_no_other_import_in_a_fresh_interpreter() -> None:
    """The bug behind this module: ``last-stage`` registered only once the pretraining code was imported."""
    import subprocess
    import sys

    code = ("from lesionlab.config import load_config\n"
            "from lesionlab.training.validation import check_component_names\n"
            "stages = 'train.stages=[{unfreeze: last-stage}, {unfreeze: last-block}]'\n"
            "check_component_names(load_config(None, [stages]))")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
