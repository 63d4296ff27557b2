"""The LesionLab classifier: a headless timm backbone followed by a named head."""

from __future__ import annotations

import torch
from torch import nn

from lesionlab.config import ModelConfig
from lesionlab.models.backbones import create_backbone
from lesionlab.models.heads import create_head


class LesionClassifier(nn.Module):
    """``backbone`` (timm, pooled features) → ``head`` (logits)."""

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    @property
    def num_features(self) -> int:
        return feature_dim(self.backbone)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def feature_dim(backbone: nn.Module) -> int:
    """Size of the pooled features a headless timm model returns (some, e.g. MobileNetV3, add a conv head)."""
    return int(getattr(backbone, "head_hidden_size", None) or backbone.num_features)


def create_model(cfg: ModelConfig, num_classes: int) -> LesionClassifier:
    """Build the classifier described by ``cfg`` for ``num_classes`` outputs."""
    backbone = create_backbone(cfg.backbone, pretrained=cfg.pretrained, weights=cfg.weights,
                               drop_path_rate=cfg.drop_path_rate)
    head = create_head(cfg.head, feature_dim(backbone), num_classes, cfg.drop_rate)
    return LesionClassifier(backbone, head).to(memory_format=torch.channels_last)


def default_normalisation(model: LesionClassifier, pretrained: bool) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Mean/std: the backbone's pretrained config when using its weights, else ImageNet statistics."""
    cfg = getattr(model.backbone, "pretrained_cfg", None) or {}
    mean = tuple(cfg.get("mean", (0.485, 0.456, 0.406)))
    std = tuple(cfg.get("std", (0.229, 0.224, 0.225)))
    return mean, std
