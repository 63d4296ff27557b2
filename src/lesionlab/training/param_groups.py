"""Optimizer parameter groups: one group, or layer-wise learning-rate decay over timm's block groups."""

from __future__ import annotations

from typing import Any

from torch import nn


def parameter_groups(model: nn.Module, lr: float, weight_decay: float,
                     layer_decay: float | None = None) -> list[dict[str, Any]]:
    """Trainable parameters as optimizer groups.

    Without ``layer_decay``: one group. With it, the backbone trunk's parameters are grouped by timm's
    ``group_matcher`` (stem, blocks, ...) and block group ``k`` of ``K`` trains at ``lr * layer_decay ** (K - k)``
    (Clark et al. 2020, BEiT); biases and norms get no weight decay; everything after the trunk (attention, metadata,
    head) trains at ``lr``.
    """
    trainable = [p for p in model.parameters() if p.requires_grad]
    if layer_decay is None:
        return [{"params": trainable}]
    from timm.optim import param_groups_layer_decay

    trunk = getattr(model, "frozen_part", None) or model
    trunk_ids = {id(p) for p in trunk.parameters()}
    groups = []
    for g in param_groups_layer_decay(trunk, weight_decay=weight_decay, layer_decay=layer_decay):
        params = [p for p in g["params"] if p.requires_grad]
        if params:
            groups.append({"params": params, "weight_decay": g["weight_decay"], "lr": lr * g.get("lr_scale", 1.0)})
    rest = [p for p in trainable if id(p) not in trunk_ids]
    if rest:
        groups.append({"params": rest, "weight_decay": weight_decay, "lr": lr})
    return groups


__all__ = ["parameter_groups"]
