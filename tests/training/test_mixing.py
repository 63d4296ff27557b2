"""Mixup/CutMix: off by default, soft targets that sum to one when on, and the config checks."""

from __future__ import annotations

import pytest
import torch

from lesionlab.config import AugmentationConfig, ConfigError, LossConfig, MixConfig, OptimizerConfig, TrainConfig
from lesionlab.training.mixing import batch_mixer, mix_batch


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
