"""MixStyle: mixes early feature statistics in training only, keeps checkpoints unchanged, finds timm's stages."""

from __future__ import annotations

import pytest
import torch

from lesionlab.config import ConfigError, ModelConfig
from lesionlab.models.classifier import create_model
from lesionlab.models.mixstyle import MixStyle, mixstyle_stages


def test_mixstyle_moves_each_image_to_mixed_statistics() -> None:
    torch.manual_seed(0)
    x = torch.randn(8, 4, 6, 6) * torch.arange(1, 9).view(8, 1, 1, 1) + torch.arange(8).view(8, 1, 1, 1)
    layer = MixStyle(p=1.0, alpha=0.1).train()
    out = layer(x)
    assert out.shape == x.shape and not torch.allclose(out, x)
    # each image keeps its normalised content: only its per-channel mean and std changed
    z_in = (x - x.mean((2, 3), keepdim=True)) / x.std((2, 3), keepdim=True)
    z_out = (out - out.mean((2, 3), keepdim=True)) / out.std((2, 3), keepdim=True)
    assert torch.allclose(z_in, z_out, atol=1e-3)
    assert torch.equal(layer.eval()(x), x)  # nothing at inference
    assert torch.equal(MixStyle(p=0.0).train()(x), x)


@pytest.mark.parametrize(("backbone", "stages"), [("resnet10t", ["layer1", "layer2", "layer3"]),
                                                  ("efficientnet-lite0", ["blocks.1", "blocks.2", "blocks.4"])])
def test_model_option_hooks_the_early_stages_and_keeps_the_checkpoint(backbone: str, stages: list[str]) -> None:
    torch.manual_seed(0)
    mixed = create_model(ModelConfig(backbone=backbone, mixstyle=1.0), 7)
    plain = create_model(ModelConfig(backbone=backbone), 7)
    assert mixstyle_stages(mixed.backbone) == stages
    assert mixed.state_dict().keys() == plain.state_dict().keys()
    plain.load_state_dict(mixed.state_dict())
    x = torch.randn(4, 3, 64, 64)
    mixed.eval(), plain.eval()
    assert torch.allclose(mixed(x), plain(x), atol=1e-5)  # inference: the same model
    mixed.train()
    torch.manual_seed(1)
    with torch.no_grad():
        assert not torch.allclose(mixed.features(x), plain.train().features(x), atol=1e-3)
    with pytest.raises(ConfigError, match=r"model\.mixstyle is a probability"):
        ModelConfig(mixstyle=1.5)
