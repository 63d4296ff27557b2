"""Frozen-backbone feature cache: built once, equal to running the backbone, invalidated by every input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from lesionlab.config import ConfigError, ModelConfig
from lesionlab.data.transforms import to_model_input
from lesionlab.models.backbones import create_backbone
from lesionlab.models.classifier import create_model
from lesionlab.models.features import build_or_load_features, check_cacheable, weights_fingerprint

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


@pytest.fixture
def images() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=(20, 32, 32, 3), dtype=np.uint8)


def _build(backbone: nn.Module, images: np.ndarray, cache: Path, rows: np.ndarray | None = None, key: str = "img-a",
           mean: tuple = MEAN):
    rows = np.arange(len(images))[::-1].copy() if rows is None else rows
    return build_or_load_features(backbone, images, rows, image_key=key, mean=mean, std=STD, cache_dir=cache,
                                  batch_size=8, progress=False)


def test_features_equal_the_backbone_and_are_reused(images: np.ndarray, tmp_path: Path) -> None:
    torch.manual_seed(0)
    backbone = create_backbone("tiny-resnet")
    first = _build(backbone, images, tmp_path)
    assert first.built and isinstance(first.features, np.memmap)
    assert first.features.shape == (20, backbone.num_features) and first.features.dtype == np.float32
    rows = first.rows
    with torch.no_grad():
        x = to_model_input(torch.from_numpy(images[rows]).permute(0, 3, 1, 2), MEAN, STD)
        expected = backbone.eval()(x).numpy()
    np.testing.assert_allclose(first.features, expected, rtol=1e-4, atol=1e-5)
    second = _build(backbone, images, tmp_path)
    assert not second.built and second.directory == first.directory
    np.testing.assert_array_equal(second.features, first.features)
    assert not list(tmp_path.glob("*.tmp-*"))  # the temporary build folder was renamed


def test_every_input_invalidates(images: np.ndarray, tmp_path: Path) -> None:
    torch.manual_seed(0)
    backbone = create_backbone("tiny-resnet")
    base = _build(backbone, images, tmp_path).directory
    other_rows = _build(backbone, images, tmp_path, rows=np.arange(10)).directory
    other_pixels = _build(backbone, images, tmp_path, key="img-b").directory
    other_norm = _build(backbone, images, tmp_path, mean=(0.4, 0.4, 0.4)).directory
    with torch.no_grad():
        next(backbone.parameters()).add_(0.01)  # fine-tuned weights
    other_weights = _build(backbone, images, tmp_path).directory
    other_arch = _build(create_backbone("tiny-efficientnet"), images, tmp_path).directory
    dirs = [base, other_rows, other_pixels, other_norm, other_weights, other_arch]
    assert len(set(dirs)) == len(dirs)
    assert len(list(tmp_path.iterdir())) == len(dirs)


def test_weights_fingerprint_sees_buffers() -> None:
    backbone = create_backbone("tiny-resnet")
    before = weights_fingerprint(backbone)
    bn = next(m for m in backbone.modules() if isinstance(m, nn.BatchNorm2d))
    bn.running_mean.add_(1.0)
    assert weights_fingerprint(backbone) != before


def test_attention_is_not_cacheable() -> None:
    check_cacheable(ModelConfig())
    with pytest.raises(ConfigError, match="attention"):
        check_cacheable(ModelConfig(attention="soft"))


def test_frozen_backbone_does_not_change() -> None:
    torch.manual_seed(0)
    model = create_model(ModelConfig(backbone="tiny-resnet", head="gap-bn-dropout", freeze_backbone=True), 3)
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    model.train()
    assert not model.backbone.training and model.head.training
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    head_before = model.head[-1].weight.clone()
    for _ in range(3):
        opt.zero_grad()
        nn.functional.cross_entropy(model(torch.randn(4, 3, 32, 32)), torch.tensor([0, 1, 2, 0])).backward()
        opt.step()
    after = model.backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights and BatchNorm statistics
    assert not torch.equal(model.head[-1].weight, head_before)


def test_frozen_attention_model_trains_its_attention() -> None:
    model = create_model(ModelConfig(backbone="tiny-resnet", attention="soft", freeze_backbone=True), 3).train()
    assert not any(p.requires_grad for p in model.backbone.trunk.parameters())
    assert all(p.requires_grad for p in model.backbone.block.parameters())


@pytest.mark.parametrize(("model_kw", "stages", "synthetic", "match"), [
    ({"attention": "soft"}, (), 0, "attention"),
    ({}, ("head", "all"), 0, "contradicts train.stages"),
    ({}, (), 3, "pixel-space SMOTE"),
])
def test_cached_head_refuses_contradictions(model_kw: dict, stages: tuple, synthetic: int, match: str) -> None:
    from types import SimpleNamespace

    from lesionlab.config import ExperimentConfig, StageConfig, TrainConfig
    from lesionlab.training.frozen_head import CachedFeatureHead

    cfg = ExperimentConfig(model=ModelConfig(freeze_backbone=True, **model_kw),
                           train=TrainConfig(stages=tuple(StageConfig(unfreeze=s) for s in stages)))
    ts = SimpleNamespace(synthetic_targets=np.zeros(synthetic))
    with pytest.raises(ConfigError, match=match):
        CachedFeatureHead(None, ts, cfg, MEAN, STD)  # type: ignore[arg-type]
