"""Every registered head: output shape, gradients to every parameter, and the documented layer structure."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lesionlab.config import ModelConfig
from lesionlab.models.classifier import create_model
from lesionlab.models.heads import HEADS, create_head
from lesionlab.registry import UnknownNameError

# head -> (layer types in order, dropout probabilities)
STRUCTURE = {
    "linear": ([nn.Dropout, nn.Linear], [0.2]),
    "gap-bn-dropout": ([nn.Flatten, nn.BatchNorm1d, nn.Dropout, nn.Linear], [0.2]),
    "bn-dense": ([nn.Flatten, nn.BatchNorm1d, nn.Linear, nn.ReLU, nn.BatchNorm1d, nn.Linear], []),
    "fc-dropout-fc": ([nn.Flatten, nn.Linear, nn.ReLU, nn.Dropout, nn.Linear], [0.5]),
    "mlp": ([nn.Linear, nn.ReLU, nn.Dropout, nn.Linear], [0.5]),
}


def test_the_five_heads_are_registered() -> None:
    assert set(STRUCTURE) <= set(HEADS)


@pytest.mark.parametrize("name", sorted(STRUCTURE))
@pytest.mark.parametrize(("in_features", "num_classes"), [(768, 7), (32, 2)])
def test_head_shape_and_gradients(name: str, in_features: int, num_classes: int) -> None:
    torch.manual_seed(0)
    head = create_head(name, in_features, num_classes, 0.2).train()
    x = torch.randn(6, in_features, requires_grad=True)
    out = head(x)
    assert out.shape == (6, num_classes)
    nn.functional.cross_entropy(out, torch.arange(6) % num_classes).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for pname, p in head.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name", sorted(STRUCTURE))
def test_head_structure(name: str) -> None:
    layers, drops = STRUCTURE[name]
    head = create_head(name, 768, 7, 0.2)
    assert [type(m) for m in head] == layers
    assert [m.p for m in head if isinstance(m, nn.Dropout)] == drops
    assert head[-1].out_features == 7


def test_documented_widths() -> None:
    assert create_head("bn-dense", 128, 7, 0.2)[2].out_features == 64
    assert create_head("mlp", 768, 7, 0.2)[0].out_features == 256
    assert create_head("fc-dropout-fc", 1280, 7, 0.2)[1].out_features == 512


def test_eval_mode_is_deterministic() -> None:
    head = create_head("gap-bn-dropout", 16, 3, 0.2)
    head.train()
    head(torch.randn(8, 16))  # non-trivial BN statistics
    head.eval()
    x = torch.randn(4, 16)
    torch.testing.assert_close(head(x), head(x))


@pytest.mark.parametrize("name", sorted(STRUCTURE))
def test_heads_in_a_classifier(name: str) -> None:
    model = create_model(ModelConfig(backbone="tiny-resnet", head=name), 4).train()
    assert model(torch.randn(3, 3, 32, 32)).shape == (3, 4)


def test_head_errors() -> None:
    with pytest.raises(UnknownNameError, match="Did you mean 'mlp'"):
        create_head("mlpp", 8, 2, 0.1)
    with pytest.raises(ValueError, match="positive sizes"):
        create_head("linear", 0, 2, 0.1)
