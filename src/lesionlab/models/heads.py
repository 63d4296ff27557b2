"""Classifier heads, registered by name. Each maps pooled features ``(B, F)`` to logits ``(B, C)``.

The backbone already global-average-pools its feature map (timm ``global_pool="avg"``), so "GAP" in a head's
description is that pooling and ``Flatten`` is a no-op on ``(B, F)`` kept for fidelity to the studies. The study
heads use their published dropout rates; ``linear`` and ``gap-bn-dropout`` follow ``model.drop_rate`` (default 0.2).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from lesionlab.registry import Registry

HeadBuilder = Callable[[int, int, float], nn.Module]
HEADS: Registry[HeadBuilder] = Registry("head")


@HEADS.register("linear", help="dropout → linear")
def linear_head(in_features: int, num_classes: int, drop_rate: float) -> nn.Module:
    return nn.Sequential(nn.Dropout(drop_rate), nn.Linear(in_features, num_classes))


@HEADS.register("gap-bn-dropout", help="GAP → BN → Dropout (model.drop_rate, 0.2 in the ISIC 2019 thesis) → FC")
def gap_bn_dropout_head(in_features: int, num_classes: int, drop_rate: float) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.BatchNorm1d(in_features), nn.Dropout(drop_rate),
                         nn.Linear(in_features, num_classes))


@HEADS.register("bn-dense", help="Flatten → BN → Dense 64 (ReLU) → BN → FC (DermaMNIST study)")
def bn_dense_head(in_features: int, num_classes: int, drop_rate: float) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.BatchNorm1d(in_features), nn.Linear(in_features, 64), nn.ReLU(inplace=True),
                         nn.BatchNorm1d(64), nn.Linear(64, num_classes))


@HEADS.register("fc-dropout-fc", help="GAP → FC 512 (ReLU) → Dropout 0.5 → FC (HAM10000 focal-loss study)")
def fc_dropout_fc_head(in_features: int, num_classes: int, drop_rate: float) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(in_features, 512), nn.ReLU(inplace=True), nn.Dropout(0.5),
                         nn.Linear(512, num_classes))


@HEADS.register("mlp", help="features (768 for ConvNeXt-Tiny) → 256, ReLU, Dropout 0.5 → classes (VAE study)")
def mlp_head(in_features: int, num_classes: int, drop_rate: float) -> nn.Module:
    return nn.Sequential(nn.Linear(in_features, 256), nn.ReLU(inplace=True), nn.Dropout(0.5),
                         nn.Linear(256, num_classes))


def create_head(name: str, in_features: int, num_classes: int, drop_rate: float) -> nn.Module:
    """Build the registered head ``name`` for ``in_features`` inputs and ``num_classes`` logits."""
    if in_features < 1 or num_classes < 1:
        raise ValueError(f"a head needs positive sizes, got in_features={in_features}, num_classes={num_classes}")
    return HEADS.get(name)(in_features, num_classes, drop_rate)
