"""Class weights and losses."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from lesionlab.registry import UnknownNameError
from lesionlab.training.losses import class_weights, create_loss, inverse_frequency


# counts and W_c = N / (C * N_c) worked out by hand
@pytest.mark.parametrize(("counts", "expected"), [
    ([10, 30, 60], [100 / 30, 100 / 90, 100 / 180]),
    ([5, 5], [1.0, 1.0]),
    ([1, 3], [2.0, 4 / 6]),
    ([6705, 1113, 1099, 514, 327, 142, 115],  # HAM10000: N = 10015, C = 7
     [10015 / (7 * 6705), 10015 / (7 * 1113), 10015 / (7 * 1099), 10015 / (7 * 514), 10015 / (7 * 327),
      10015 / (7 * 142), 10015 / (7 * 115)]),
])
def test_inverse_weights(counts: list[int], expected: list[float]) -> None:
    np.testing.assert_allclose(inverse_frequency(np.array(counts)), expected, rtol=1e-12)
    w = class_weights("inverse", np.array(counts))
    assert w.dtype == torch.float32 and w.shape == (len(counts),)
    np.testing.assert_allclose(w.numpy(), expected, rtol=1e-6)
    # every class then carries the same total weight N / C
    np.testing.assert_allclose(w.numpy() * np.array(counts), sum(counts) / len(counts), rtol=1e-6)


@pytest.mark.parametrize("counts", [[3, 0, 2], [0], [4, -1]])
def test_inverse_weights_need_every_class(counts: list[int]) -> None:
    with pytest.raises(ValueError, match="at least one training sample"):
        class_weights("inverse", np.array(counts))


def test_no_weights() -> None:
    assert class_weights("none", np.array([1, 0, 5])) is None


@pytest.mark.parametrize(("weight", "smoothing"), [(None, 0.0), (torch.tensor([1.0, 2.0, 0.5]), 0.0),
                                                    (torch.tensor([3.0, 1.0, 1.0]), 0.1)])
def test_cross_entropy(weight: torch.Tensor | None, smoothing: float) -> None:
    torch.manual_seed(0)
    logits, target = torch.randn(8, 3), torch.tensor([0, 1, 2, 2, 1, 0, 0, 2])
    loss = create_loss("ce", weight=weight, label_smoothing=smoothing)
    assert isinstance(loss, nn.Module)
    expected = nn.functional.cross_entropy(logits, target, weight=weight, label_smoothing=smoothing)
    torch.testing.assert_close(loss(logits, target), expected)
    if weight is not None:  # the weights really change the value
        assert not torch.isclose(loss(logits, target), nn.functional.cross_entropy(logits, target))


@pytest.mark.parametrize(("factory", "name", "valid"), [
    (lambda n: create_loss(n), "dice", "ce, focal"),
    (lambda n: class_weights(n, np.array([1, 2])), "inverse-sqrt", "effective, inverse, none"),
])
def test_unknown_names(factory, name: str, valid: str) -> None:
    with pytest.raises(UnknownNameError, match=valid):
        factory(name)
