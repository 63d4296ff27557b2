"""The acquisition chain: same shape and dtype out, each step really changes pixels, config validation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from lesionlab.config import ConfigError
from lesionlab.data.acquisition import AcquisitionChain, AcquisitionParams, jpeg_round_trip, rescale
from lesionlab.data.batch_augment import BatchAugment
from lesionlab.data.transforms import augmentation_params, get_augmentation


def lesion(size: int = 64) -> torch.Tensor:
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    return torch.from_numpy(np.array(Image.fromarray(small).resize((size, size), Image.NEAREST))).permute(2, 0, 1)


@pytest.mark.parametrize("params", [
    AcquisitionParams(p=1, scale=(0.3, 0.3), jpeg_p=0, blur_p=0, noise_p=0),       # resampling only
    AcquisitionParams(p=1, scale=(1, 1), jpeg_p=1, jpeg_quality=(20, 20), blur_p=0, noise_p=0),  # JPEG only
    AcquisitionParams(p=1, scale=(1, 1), jpeg_p=0, blur_p=1, blur_sigma=1.5, noise_p=0),     # blur only
    AcquisitionParams(p=1, scale=(1, 1), jpeg_p=0, blur_p=0, noise_p=1, noise_std=0.05),     # noise only
])
def test_each_step_changes_pixels_and_keeps_shape(params: AcquisitionParams) -> None:
    torch.manual_seed(0)
    img = lesion()
    out = AcquisitionChain(params)(img)
    assert out.shape == img.shape and out.dtype == torch.uint8
    diff = (out.float() - img.float()).abs().mean().item()
    assert 0.1 < diff < 40  # changed, but still the same picture


def test_probability_zero_is_identity_and_helpers_round_trip() -> None:
    img = lesion()
    assert torch.equal(AcquisitionChain(AcquisitionParams(p=0))(img), img)
    assert jpeg_round_trip(img, 95).shape == img.shape
    assert (rescale(img, 0.5).float() - img.float()).abs().mean() > 0.5


def test_augmentation_param_builds_the_chain_and_is_validated() -> None:
    torch.manual_seed(1)
    aug = get_augmentation("none", 64, {"acquisition": 1.0, "acquisition_scale": [0.5, 0.5]})
    img = lesion()
    assert not torch.equal(aug(img), img)
    with pytest.raises(ConfigError, match="acquisition must be a probability"):
        augmentation_params("light", {"acquisition": 2})
    with pytest.raises(ConfigError, match="acquisition_scale must satisfy"):
        augmentation_params("light", {"acquisition": 0.5, "acquisition_scale": [0, 1]})
    with pytest.raises(ConfigError, match="acquisition_jpeg must satisfy"):
        augmentation_params("light", {"acquisition_jpeg": [50, 200]})
    with pytest.raises(ConfigError, match="runs per image"):
        BatchAugment(augmentation_params("light", {"acquisition": 0.5}))
