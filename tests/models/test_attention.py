"""Soft attention: γ and map shapes, maps normalised over space, gradients, insertion after a stage, heat-maps."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lesionlab.config import ModelConfig
from lesionlab.models.attention import (
    ATTENTIONS,
    AttentionBackbone,
    SoftAttention,
    SoftAttentionBlock,
    attention_heatmap,
)
from lesionlab.models.backbones import create_backbone
from lesionlab.models.classifier import create_model
from lesionlab.registry import UnknownNameError


@pytest.mark.parametrize(("channels", "maps", "h", "w"), [(8, 16, 5, 7), (32, 4, 3, 3), (3, 1, 1, 1)])
def test_soft_attention_shapes(channels: int, maps: int, h: int, w: int) -> None:
    att = SoftAttention(channels, maps)
    assert att.gamma.shape == (1,)
    assert att.weight.shape == (maps, channels, 3, 3)  # the 3D kernel (K, 1, C, 3, 3) spanning every channel
    x = torch.randn(2, channels, h, w)
    attended, m = att(x)
    assert attended.shape == x.shape
    assert m.shape == (2, maps, h, w)
    assert (m >= 0).all()
    torch.testing.assert_close(m.sum((2, 3)), torch.ones(2, maps))  # softmax over space


def test_attended_is_gamma_times_summed_maps_times_features() -> None:
    torch.manual_seed(0)
    att = SoftAttention(4, 3)
    with torch.no_grad():
        att.gamma.fill_(0.7)
    x = torch.randn(2, 4, 5, 5)
    attended, m = att(x)
    torch.testing.assert_close(attended, 0.7 * m.sum(1, keepdim=True) * x)


def test_conv3d_equals_a_2d_convolution_over_channels() -> None:
    """Depth = stride = C: each map is a 3x3 convolution over all channels (how the study's Keras layer works)."""
    torch.manual_seed(0)
    att = SoftAttention(6, 2)
    x = torch.randn(1, 6, 4, 4)
    expected = nn.functional.conv2d(x, att.weight, att.bias, padding=1).relu().flatten(2).softmax(-1).view(1, 2, 4, 4)
    torch.testing.assert_close(att.attention_maps(x), expected)


def test_block_output_and_gradients() -> None:
    torch.manual_seed(0)
    block = SoftAttentionBlock(8, num_maps=16).train()
    assert block.drop.p == 0.5
    x = torch.randn(2, 8, 6, 5, requires_grad=True)
    out = block(x)
    assert out.shape == (2, 16, 3, 3)  # 2C channels, 2x2 max-pool (ceil, like Keras padding="same")
    assert block.last_maps is not None and block.last_maps.shape == (2, 16, 6, 5)
    out.sum().backward()
    for name, p in block.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


# At the end of a stride-32 trunk, 64 px gives a 2x2 map (a 1x1 map makes every softmax over space constant).
@pytest.mark.parametrize(("backbone", "stage", "size"), [("tiny-resnet", -1, 64), ("tiny-resnet", 2, 32),
                                                         ("tiny-efficientnet", 3, 32), ("tiny-convnext", -1, 64)])
def test_attention_in_a_classifier(backbone: str, stage: int, size: int) -> None:
    torch.manual_seed(0)
    model = create_model(ModelConfig(backbone=backbone, attention="soft", attention_stage=stage), 5).train()
    assert isinstance(model.backbone, AttentionBackbone)
    trunk = create_backbone(backbone)
    channels = trunk.num_features if stage == -1 else trunk.feature_info[stage]["num_chs"]
    assert model.num_features == 2 * channels
    x = torch.randn(2, 3, size, size)
    logits = model(x)
    assert logits.shape == (2, 5)
    nn.functional.cross_entropy(logits, torch.tensor([0, 4])).backward()
    assert model.backbone.block.attention.gamma.grad is not None
    assert model.backbone.block.attention.weight.grad.abs().sum() > 0
    maps = model.backbone.attention_maps(x)
    assert maps.shape[:2] == (2, 16)


def test_stage_insertion_drops_later_blocks() -> None:
    full = sum(p.numel() for p in create_backbone("tiny-resnet").parameters())
    cut = create_backbone("tiny-resnet", attention="soft", attention_stage=1)
    trunk_params = sum(p.numel() for p in cut.trunk.parameters())
    assert trunk_params < full


def test_heatmap_for_a_prediction() -> None:
    torch.manual_seed(0)
    model = create_model(ModelConfig(backbone="tiny-resnet", attention="soft", attention_stage=2), 3).eval()
    x = torch.randn(2, 3, 32, 32)
    heat = attention_heatmap(model, x)
    assert heat.shape == (2, 32, 32)
    assert heat.min() >= 0 and heat.max() <= 1 and torch.isclose(heat.amax((1, 2)), torch.ones(2)).all()
    with pytest.raises(ValueError, match="no attention block"):
        attention_heatmap(create_model(ModelConfig(backbone="tiny-resnet"), 3), x)


def test_attention_errors() -> None:
    assert "soft" in ATTENTIONS and "none" in ATTENTIONS
    with pytest.raises(UnknownNameError):
        create_backbone("tiny-resnet", attention="hard")
    with pytest.raises(ValueError, match="attention_stage"):
        create_backbone("tiny-resnet", attention="soft", attention_stage=9)
    with pytest.raises(ValueError, match="expects 8 channels"):
        SoftAttention(8).attention_maps(torch.randn(1, 4, 3, 3))
