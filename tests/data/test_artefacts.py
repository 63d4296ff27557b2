"""Dermoscopy artefacts as augmentation: each one really draws what it says, shape and dtype kept, config wiring."""

from __future__ import annotations

import pytest
import torch

from lesionlab.config import ConfigError
from lesionlab.data.artefacts import ArtefactParams, DermoscopyArtefacts
from lesionlab.data.transforms import augmentation_params, get_augmentation


def skin(size: int = 96) -> torch.Tensor:
    """Uniform light skin tone, so every drawn mark shows as a change."""
    return torch.tensor([200, 150, 130], dtype=torch.uint8).view(3, 1, 1).expand(3, size, size).contiguous()


def only(**which: float) -> ArtefactParams:
    return ArtefactParams(p=1, **{"hair_p": 0, "ruler_p": 0, "vignette_p": 0, "bubbles_p": 0, **which})


def test_hair_draws_dark_thin_strands() -> None:
    torch.manual_seed(0)
    img = skin()
    out = DermoscopyArtefacts(only(hair_p=1))(img)
    assert out.shape == img.shape and out.dtype == torch.uint8
    dark = (out.float().mean(0) < 100).float().mean().item()
    assert 0.002 < dark < 0.25  # thin strands, not a blot


def test_vignette_blackens_the_corners_and_keeps_the_centre() -> None:
    torch.manual_seed(1)
    img = skin()
    out = DermoscopyArtefacts(only(vignette_p=1))(img)
    assert out[:, 0, 0].max() == 0 and out[:, -1, -1].max() == 0
    assert torch.equal(out[:, 40:56, 40:56], img[:, 40:56, 40:56])


@pytest.mark.parametrize("which", ["ruler_p", "bubbles_p"])
def test_ruler_and_bubbles_change_some_pixels(which: str) -> None:
    torch.manual_seed(2)
    img = skin()
    changed = (DermoscopyArtefacts(only(**{which: 1}))(img) != img).any(0).float().mean().item()
    assert 0.001 < changed < 0.5


def test_probability_zero_is_identity_and_the_preset_parameter_is_wired() -> None:
    img = skin()
    assert torch.equal(DermoscopyArtefacts(ArtefactParams(p=0))(img), img)
    params = augmentation_params("light", {"artefacts": 0.5})
    assert params["artefacts"] == 0.5
    steps = get_augmentation("light", 96, {"artefacts": 1.0}).transforms
    assert isinstance(steps[0], DermoscopyArtefacts)  # drawn first: the camera's chain comes after
    with pytest.raises(ConfigError, match="artefacts must be a probability"):
        augmentation_params("light", {"artefacts": 2})
