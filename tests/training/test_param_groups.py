"""Parameter groups: layer-wise learning-rate decay and no weight decay on norms and biases."""

from __future__ import annotations

import pytest

from lesionlab.config import ModelConfig
from lesionlab.models.classifier import create_model
from lesionlab.training.param_groups import parameter_groups


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
