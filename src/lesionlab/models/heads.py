"""Classifier heads, registered by name. Each maps pooled features ``(B, F)`` to logits ``(B, C)``."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from lesionlab.registry import Registry

HeadBuilder = Callable[[int, int, float], nn.Module]
HEADS: Registry[HeadBuilder] = Registry("head")


@HEADS.register("linear", help="dropout → linear")
def linear_head(in_features: int, num_classes: int, drop_rate: float) -> nn.Module:
    return nn.Sequential(nn.Dropout(drop_rate), nn.Linear(in_features, num_classes))


def create_head(name: str, in_features: int, num_classes: int, drop_rate: float) -> nn.Module:
    return HEADS.get(name)(in_features, num_classes, drop_rate)
