"""Augmentation presets: every parameter overridable, bad keys/values named, uint8 in → uint8 out."""

from __future__ import annotations

import pytest
import torch
from torchvision.transforms import v2

from lesionlab.config import ConfigError, load_config
from lesionlab.data.transforms import (
    AUGMENT_PARAMS,
    AUGMENTATIONS,
    RandomRot90,
    augmentation_params,
    build_augmentation,
    get_augmentation,
)
from lesionlab.registry import UnknownNameError


def step_types(t) -> list[type]:
    return [type(s) for s in getattr(t, "transforms", [t])]


@pytest.mark.parametrize(("preset", "expected"), [
    ("none", [v2.Identity]),
    ("light", [v2.RandomHorizontalFlip, v2.RandomVerticalFlip, RandomRot90]),
    ("standard", [v2.RandomHorizontalFlip, v2.RandomVerticalFlip, RandomRot90, v2.RandomAffine, v2.ColorJitter]),
    ("heavy", [v2.RandomHorizontalFlip, v2.RandomVerticalFlip, RandomRot90, v2.RandomResizedCrop, v2.RandomAffine,
               v2.ColorJitter, v2.RandomErasing]),
])
def test_presets(preset: str, expected: list[type]) -> None:
    t = get_augmentation(preset, 24)
    assert step_types(t) == expected
    torch.manual_seed(0)
    img = torch.randint(0, 256, (3, 24, 24), dtype=torch.uint8)
    out = t(img)
    assert out.dtype == torch.uint8 and out.shape == img.shape
    if preset == "none":
        assert torch.equal(out, img)


def test_every_parameter_is_overridable() -> None:
    assert set(augmentation_params("heavy")) == set(AUGMENT_PARAMS)
    p = augmentation_params("standard", {"degrees": 10, "brightness": 0, "hflip": 0.0, "scale": [0.8, 1.2]})
    assert (p["degrees"], p["brightness"], p["hflip"], p["scale"]) == (10, 0, 0.0, (0.8, 1.2))
    t = build_augmentation(p, 16)
    affine = next(s for s in t.transforms if isinstance(s, v2.RandomAffine))
    assert affine.degrees == [-10.0, 10.0]
    jitter = next(s for s in t.transforms if isinstance(s, v2.ColorJitter))
    assert jitter.brightness is None and jitter.contrast is not None  # brightness switched off, the rest kept
    assert v2.RandomHorizontalFlip not in step_types(t)
    heavy_no_cutout = get_augmentation("heavy", 16, {"erase_p": 0, "crop_scale": None})
    assert v2.RandomErasing not in step_types(heavy_no_cutout)
    assert v2.RandomResizedCrop not in step_types(heavy_no_cutout)


def test_light_preset_is_a_d4_transform() -> None:
    img = torch.arange(3 * 4 * 4, dtype=torch.uint8).reshape(3, 4, 4)
    views = {tuple(get_augmentation("light", 4)(img).flatten().tolist()) for _ in range(300)}
    assert 2 <= len(views) <= 8  # flips and 90° rotations only: at most the 8 symmetries of the square
    assert all(sorted(v) == sorted(img.flatten().tolist()) for v in views)  # pixels are moved, never changed


@pytest.mark.parametrize(("params", "match"), [
    ({"rotation": 10}, "Unknown train.augmentation.params key.*valid"),
    ({"hflip": 1.5}, "hflip must be a probability"),
    ({"degrees": -3}, "degrees must be a number"),
    ({"scale": [0.9]}, "scale must be a"),
    ({"hue": 0.7}, "hue must be"),
])
def test_bad_parameters_are_named(params: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        get_augmentation("standard", 16, params)


def test_unknown_preset_lists_valid_ones() -> None:
    with pytest.raises(UnknownNameError, match="heavy, light, none, randaugment, standard, trivial"):
        get_augmentation("strong", 16)
    assert AUGMENTATIONS.names() == ["heavy", "light", "none", "randaugment", "standard", "trivial"]


def test_selectable_from_yaml_and_cli(tmp_path) -> None:
    path = tmp_path / "aug.yaml"
    path.write_text("train:\n  augmentation:\n    preset: heavy\n    params: {erase_p: 0.25, crop_scale: [0.7, 1.0]}\n")
    cfg = load_config(path, ["train.augmentation.params.degrees=15"])
    assert cfg.train.augmentation.preset == "heavy"
    p = augmentation_params(cfg.train.augmentation.preset, cfg.train.augmentation.params)
    assert (p["erase_p"], p["crop_scale"], p["degrees"]) == (0.25, (0.7, 1.0), 15)


@pytest.mark.parametrize("preset", ["trivial", "randaugment"])
def test_policy_presets_keep_uint8_shape(preset: str) -> None:
    torch.manual_seed(0)
    img = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    outs = [get_augmentation(preset, 32)(img) for _ in range(8)]
    assert all(o.shape == img.shape and o.dtype == torch.uint8 for o in outs)
    assert any(not torch.equal(o, img) for o in outs)


def test_unknown_policy_lists_valid_names() -> None:
    with pytest.raises(KeyError, match="trivialaugment"):
        augmentation_params("light", {"policy": "autoaugmentx"})
    with pytest.raises(ConfigError, match="policy_magnitude"):
        augmentation_params("randaugment", {"policy_magnitude": 99})
