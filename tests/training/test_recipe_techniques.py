"""Recipe-search techniques: augmentation policies, mixup/CutMix, layer-wise LR decay, colour constancy."""

from __future__ import annotations

import pytest
import torch

from lesionlab.config import (
    AugmentationConfig,
    ConfigError,
    LossConfig,
    MixConfig,
    ModelConfig,
    OptimizerConfig,
    TrainConfig,
)
from lesionlab.data.batch_augment import BatchAugment
from lesionlab.data.transforms import augmentation_params, get_augmentation
from lesionlab.models.classifier import create_model
from lesionlab.models.colour import ShadesOfGray
from lesionlab.training.mixing import batch_mixer, mix_batch
from lesionlab.training.param_groups import parameter_groups


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


def test_batch_mode_refuses_per_image_policies() -> None:
    with pytest.raises(ConfigError, match=r"augmentation\.mode=sample"):
        BatchAugment(augmentation_params("trivial"))


def test_mixer_off_by_default_and_soft_targets_when_on() -> None:
    assert batch_mixer(MixConfig(), 7) is None
    x, y = torch.randn(8, 3, 16, 16), torch.arange(8) % 7
    assert mix_batch(None, x, y, 7)[1] is y
    for cfg in (MixConfig(mixup=0.2), MixConfig(cutmix=1.0), MixConfig(mixup=0.2, cutmix=1.0, prob=0.5)):
        mixed, soft = mix_batch(batch_mixer(cfg, 7), x, y, 7)
        assert mixed.shape == x.shape and soft.shape == (8, 7)
        assert torch.allclose(soft.sum(1), torch.ones(8))


def test_mix_config_checks() -> None:
    with pytest.raises(ConfigError, match=r"loss\.name=focal"):
        TrainConfig(loss=LossConfig("focal"), augmentation=AugmentationConfig(mix=MixConfig(mixup=0.2)))
    with pytest.raises(ConfigError, match=r"train\.augmentation\.mix"):
        MixConfig(prob=1.5)
    with pytest.raises(ConfigError, match=r"train\.optimizer\.layer_decay"):
        OptimizerConfig(layer_decay=1.5)


def test_layer_decay_scales_deeper_blocks_less() -> None:
    model = create_model(ModelConfig(backbone="tiny-efficientnet"), 7)
    flat = parameter_groups(model, 1e-3, 0.05)
    assert len(flat) == 1 and len(flat[0]["params"]) == len(list(model.parameters()))
    groups = parameter_groups(model, 1e-3, 0.05, layer_decay=0.5)
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    lrs = [g["lr"] for g in groups]
    assert min(lrs) < max(lrs) == pytest.approx(1e-3)  # the stem trains slowest, the head at the full rate
    head_ids = {id(p) for p in model.head.parameters()}
    assert all(g["lr"] == pytest.approx(1e-3) for g in groups if any(id(p) in head_ids for p in g["params"]))
    assert any(g["weight_decay"] == 0 for g in groups)  # norms and biases are not decayed


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
