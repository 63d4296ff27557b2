"""Colour constancy (Shades of Gray): it removes a colour cast and travels with the saved model."""

from __future__ import annotations

import pytest
import torch

from lesionlab.config import ConfigError, ModelConfig
from lesionlab.models.classifier import create_model
from lesionlab.models.colour import ShadesOfGray


def test_shades_of_gray_removes_a_colour_cast() -> None:
    torch.manual_seed(0)
    raw = torch.rand(2, 3, 32, 32) * 0.6 + 0.2
    cast = raw * torch.tensor([1.0, 0.7, 0.5]).view(1, 3, 1, 1)  # a warm illuminant
    mean, std = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
    out = ShadesOfGray(6.0, mean, std)((cast - 0.5) / 0.5) * 0.5 + 0.5
    def spread(x: torch.Tensor) -> float:
        m = x.mean(dim=(-2, -1))
        return float((m.max(1).values - m.min(1).values).mean())
    assert spread(out) < spread(cast) / 3


def test_colour_constancy_travels_with_the_saved_model(tmp_path) -> None:
    from lesionlab.models.checkpoint import Preprocessing, load_model, save_model

    cfg = ModelConfig(backbone="tiny-resnet", colour_constancy="shades-of-gray")
    model = create_model(cfg, 7).eval()
    model.set_normalisation((0.4, 0.5, 0.6), (0.2, 0.25, 0.3))
    prep = Preprocessing(image_size=16, crop="center-square", mean=(0.4, 0.5, 0.6), std=(0.2, 0.25, 0.3),
                         class_names=tuple("abcdefg"), taxonomy="ham7")
    save_model(tmp_path / "model.pt", model, cfg, prep)
    loaded, _ = load_model(tmp_path / "model.pt")
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(loaded(x), model(x), atol=1e-5)
    assert torch.allclose(loaded.colour.std.flatten(), torch.tensor([0.2, 0.25, 0.3]))
    with pytest.raises(ConfigError, match="feature_cache"):
        ModelConfig(colour_constancy="shades-of-gray", freeze_backbone=True)
