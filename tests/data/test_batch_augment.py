"""Batched uint8 augmentation: per-sample draws, exact geometric ops, the same parameters as the per-image path."""

from __future__ import annotations

import pytest
import torch

from lesionlab.config import AugmentationConfig, ConfigError, TrainConfig
from lesionlab.data.batch_augment import BatchAugment, batch_augmentation, rank_generator
from lesionlab.data.transforms import augmentation_params, loader_augmentation


def batch(n: int = 32, size: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def only(**params) -> BatchAugment:
    return BatchAugment(augmentation_params("none", params))


def d4(img: torch.Tensor) -> list[torch.Tensor]:
    views = []
    for k in range(4):
        r = torch.rot90(img, k, dims=(-2, -1))
        views += [r, r.flip(-1)]
    return views


def test_none_is_identity_and_keeps_uint8() -> None:
    x = batch()
    out = BatchAugment(augmentation_params("none"))(x)
    assert out.dtype == torch.uint8 and torch.equal(out, x)


def test_light_gives_each_sample_its_own_d4_view() -> None:
    x = batch(n=64)
    out = BatchAugment(augmentation_params("light"))(x, generator=torch.Generator().manual_seed(1))
    assert out.dtype == torch.uint8
    kinds = set()
    for src, dst in zip(x, out, strict=True):
        matches = [i for i, v in enumerate(d4(src)) if torch.equal(v, dst)]
        assert matches, "a flip/rot90 output must be an exact dihedral view of its own input"
        kinds.add(matches[0])
    assert len(kinds) >= 5  # per-sample draws, not one transform for the whole batch


def test_flip_probability_one_equals_the_flip() -> None:
    x = batch()
    assert torch.equal(only(hflip=1.0)(x), x.flip(-1))
    assert torch.equal(only(vflip=1.0)(x), x.flip(-2))


def test_geometric_ops_keep_shape_and_fill_black_outside() -> None:
    x = torch.full((16, 3, 32, 32), 200, dtype=torch.uint8)
    out = only(degrees=45.0)(x, generator=torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == torch.uint8
    corners = out[:, :, [0, 0, -1, -1], [0, -1, 0, -1]]
    assert (corners < 100).float().mean() > 0.5  # rotated corners fall outside the source: black, as v2.RandomAffine
    centre = out[:, :, 14:18, 14:18]
    assert (centre == 200).all()


def test_zero_rotation_zoom_and_shift_is_close_to_identity() -> None:
    x = batch(size=24)
    out = only(degrees=1e-6, scale=(1.0, 1.0))(x)
    assert (out.int() - x.int()).abs().max() <= 1


def test_random_resized_crop_zooms_in() -> None:
    # a left-to-right ramp: a crop of a fraction of the image spans a smaller range of values
    ramp = torch.linspace(0, 255, 32).round().to(torch.uint8).view(1, 1, 1, 32).expand(8, 3, 32, 32).contiguous()
    out = only(crop_scale=(0.1, 0.2))(ramp, generator=torch.Generator().manual_seed(0))
    spans = (out[:, 0, 16].int().max(-1).values - out[:, 0, 16].int().min(-1).values)
    assert (spans < 200).all()


def test_colour_jitter_is_per_sample_and_keeps_geometry() -> None:
    x = torch.full((32, 3, 8, 8), 128, dtype=torch.uint8)
    x[:, 0] = 180
    out = only(brightness=0.4, saturation=0.4, hue=0.2)(x, generator=torch.Generator().manual_seed(0))
    means = out.float().mean((2, 3))
    assert means.std(0).min() > 1  # different draws per sample
    assert (out.float().std((2, 3)) < 1.0).all()  # a flat image stays flat: colour ops are per pixel


def test_brightness_only_scales_and_clamps() -> None:
    x = batch()
    out = only(brightness=0.5)(x, generator=torch.Generator().manual_seed(3))
    ratio = out.float().sum((1, 2, 3)) / x.float().sum((1, 2, 3))
    assert ratio.min() < 0.9 and ratio.max() > 1.1 and ratio.min() >= 0.5 - 0.02


def test_cutout_zeroes_one_rectangle_in_chosen_samples() -> None:
    x = torch.full((64, 3, 32, 32), 255, dtype=torch.uint8)
    out = only(erase_p=0.5, erase_scale=(0.05, 0.1))(x, generator=torch.Generator().manual_seed(0))
    zeroed = (out == 0).all(1)  # (n, h, w)
    area = zeroed.flatten(1).float().mean(1)
    erased = area > 0
    assert 16 < int(erased.sum()) < 48
    assert ((area[erased] >= 0.02) & (area[erased] <= 0.12)).all()
    for mask in zeroed[erased]:  # one axis-aligned rectangle: its bounding box is filled
        rows, cols = mask.any(1).nonzero(), mask.any(0).nonzero()
        assert mask[rows.min():rows.max() + 1, cols.min():cols.max() + 1].all()


def test_config_switches_augmentation_from_loader_to_batch() -> None:
    sample = TrainConfig(augmentation=AugmentationConfig("standard"))
    assert batch_augmentation(sample) is None and loader_augmentation(sample, 32) is not None
    batched = TrainConfig(augmentation=AugmentationConfig("standard", mode="batch"))
    assert isinstance(batch_augmentation(batched), BatchAugment) and loader_augmentation(batched, 32) is None
    with pytest.raises(ConfigError, match=r"train\.augmentation\.mode must be sample or batch"):
        AugmentationConfig(mode="gpu")


def test_bad_input_is_refused() -> None:
    aug = BatchAugment(augmentation_params("light"))
    with pytest.raises(ValueError, match="uint8"):
        aug(torch.zeros(2, 3, 8, 8))
    with pytest.raises(ConfigError, match="square"):
        aug(torch.zeros(2, 3, 8, 12, dtype=torch.uint8))


def test_float_ops_run_outside_autocast(monkeypatch) -> None:
    """Inside a bf16/fp16 training step the blends and the sampling grid still run in fp32."""
    states = []
    real = BatchAugment._jitter

    def spy(self, y, g):
        states.append((torch.is_autocast_enabled("cpu"), y.dtype))
        return real(self, y, g)

    monkeypatch.setattr(BatchAugment, "_jitter", spy)
    x = batch(size=24)
    aug = BatchAugment(augmentation_params("heavy"))
    plain = aug(x, generator=torch.Generator().manual_seed(5))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = aug(x, generator=torch.Generator().manual_seed(5))
    assert states == [(False, torch.float32)] * 2
    assert torch.equal(plain, mixed)


def test_ranks_draw_differently_from_the_same_global_seed() -> None:
    x = batch(n=16)
    aug = BatchAugment(augmentation_params("heavy"))
    outs = []
    for rank in (0, 1, 0):
        torch.manual_seed(0)  # what seed_everything does on every rank
        outs.append(aug(x, generator=rank_generator("cpu", rank)))
    assert torch.equal(outs[0], outs[2]) and not torch.equal(outs[0], outs[1])


def test_geometric_ops_refuse_non_square_batches() -> None:
    with pytest.raises(ConfigError, match="square"):
        only(degrees=10.0)(torch.zeros(2, 3, 8, 12, dtype=torch.uint8))
    assert only(brightness=0.2)(torch.zeros(2, 3, 8, 12, dtype=torch.uint8)).shape == (2, 3, 8, 12)


def test_batch_mode_refuses_per_image_policies() -> None:
    with pytest.raises(ConfigError, match=r"augmentation\.mode=sample"):
        BatchAugment(augmentation_params("trivial"))
