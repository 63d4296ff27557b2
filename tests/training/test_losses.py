"""Losses and class weights: inverse-frequency and effective-number weights, focal loss, building the loss from a
TrainConfig."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from lesionlab.config import ConfigError, LossConfig, TrainConfig, load_config
from lesionlab.registry import UnknownNameError
from lesionlab.training.losses import (
    FocalLoss,
    class_weights,
    create_loss,
    effective_number,
    inverse_frequency,
    loss_from_config,
)


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


def batch(n: int = 32, c: int = 7, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, generator=g) * 3, torch.randint(0, c, (n,), generator=g)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_focal_equals_ce_at_gamma0_alpha1(smoothing: float) -> None:
    logits, target = batch()
    ce = F.cross_entropy(logits, target, label_smoothing=smoothing)
    torch.testing.assert_close(create_loss("focal", gamma=0.0, label_smoothing=smoothing)(logits, target), ce)
    ones = torch.ones(7)
    torch.testing.assert_close(create_loss("focal", gamma=0.0, alpha=ones, label_smoothing=smoothing)(logits, target),
                               ce)


def test_focal_formula_by_hand() -> None:
    logits, target = batch(8, 3, seed=1)
    alpha = torch.tensor([0.25, 1.0, 2.0])
    p = logits.softmax(-1)[torch.arange(8), target]
    expected = (-alpha[target] * (1 - p) ** 2.0 * p.log()).mean()
    torch.testing.assert_close(FocalLoss(gamma=2.0, alpha=alpha)(logits, target), expected)


def test_focal_down_weights_easy_examples() -> None:
    logits, target = batch()
    ce = F.cross_entropy(logits, target, reduction="none")
    focal = [FocalLoss(gamma=g)(logits, target).item() for g in (0.0, 1.0, 2.0, 5.0)]
    assert focal[0] == pytest.approx(ce.mean().item())
    assert all(a > b for a, b in itertools.pairwise(focal))  # larger γ → smaller loss
    easy = torch.tensor([[10.0, 0.0], [0.0, 10.0]]), torch.tensor([0, 1])
    hard = torch.tensor([[0.0, 10.0], [10.0, 0.0]]), torch.tensor([0, 1])
    ratio_easy = FocalLoss(gamma=2)(*easy) / F.cross_entropy(*easy)
    ratio_hard = FocalLoss(gamma=2)(*hard) / F.cross_entropy(*hard)
    assert ratio_easy < 1e-6 and ratio_hard > 0.99


def test_focal_gradients_finite() -> None:
    logits, target = batch()
    logits.requires_grad_(True)
    FocalLoss(gamma=2.0, alpha=torch.rand(7) + 0.1)(logits, target).backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_focal_rejects_negative_gamma() -> None:
    with pytest.raises(ValueError, match="gamma"):
        FocalLoss(gamma=-1)


@pytest.mark.parametrize(("counts", "beta"), [([10, 30, 60], 0.9), ([6705, 1113, 1099, 514, 327, 142, 115], 0.999),
                                              ([5, 5], 0.99)])
def test_effective_number_weights(counts: list[int], beta: float) -> None:
    n = np.array(counts, dtype=float)
    raw = (1 - beta) / (1 - beta ** n)  # Cui et al. 2019, eq. for the class-balanced term
    expected = raw / raw.sum() * len(n)
    np.testing.assert_allclose(effective_number(np.array(counts), beta), expected, rtol=1e-12)
    w = class_weights("effective", np.array(counts), beta=beta).numpy()
    np.testing.assert_allclose(w.sum(), len(counts), rtol=1e-6)
    assert np.all(np.diff(w[np.argsort(n)]) <= 1e-9)  # rarer classes never weigh less


def test_effective_number_limits() -> None:
    counts = np.array([10, 40, 200])
    np.testing.assert_allclose(effective_number(counts, beta=0.0), np.ones(3))  # β=0: no re-weighting
    inv = 1 / counts / (1 / counts).sum() * 3  # β→1: inverse frequency (normalised)
    np.testing.assert_allclose(effective_number(counts, beta=1 - 1e-9), inv, rtol=1e-5)


def test_inverse_weights_match_formula_on_config_path() -> None:
    counts = np.array([40, 10, 50])
    loss = loss_from_config(TrainConfig(loss=LossConfig("ce", class_weights="inverse")), counts)
    np.testing.assert_allclose(loss.weight.numpy(), counts.sum() / (3 * counts), rtol=1e-6)


def test_focal_alpha_from_config() -> None:
    counts = np.array([40, 10, 50])
    from_weights = loss_from_config(TrainConfig(loss=LossConfig("focal", class_weights="inverse",
                                                                  focal_gamma=1.5)), counts)
    assert isinstance(from_weights, FocalLoss) and from_weights.gamma == 1.5
    np.testing.assert_allclose(from_weights.alpha.numpy(), counts.sum() / (3 * counts), rtol=1e-6)
    given = loss_from_config(TrainConfig(loss=LossConfig("focal", focal_alpha=(0.2, 0.5, 0.3))), counts)
    np.testing.assert_allclose(given.alpha.numpy(), [0.2, 0.5, 0.3])
    with pytest.raises(ConfigError, match="3 classes"):
        loss_from_config(TrainConfig(loss=LossConfig("focal", focal_alpha=(0.2, 0.8))), counts)


def test_loss_selectable_from_yaml_and_cli(tmp_path) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text("train:\n  loss: {name: focal, focal_gamma: 3, class_weights: effective, effective_beta: 0.99}\n")
    cfg = load_config(path, ["train.loss.focal_alpha=1,2,3"])
    loss = cfg.train.loss
    assert (loss.name, loss.focal_gamma, loss.class_weights) == ("focal", 3.0, "effective")
    assert cfg.train.loss.focal_alpha == (1.0, 2.0, 3.0)
    with pytest.raises(UnknownNameError, match="ce, focal"):
        loss_from_config(load_config(None, ["train.loss.name=focall"]).train, np.array([1, 2, 3]))
    with pytest.raises(UnknownNameError, match="effective, inverse, none"):
        loss_from_config(load_config(None, ["train.loss.class_weights=sqrt"]).train, np.array([1, 2, 3]))


@pytest.mark.parametrize(("override", "key"), [("train.loss.focal_gamma=-1", "focal_gamma"),
                                               ("train.loss.effective_beta=1", "effective_beta"),
                                               ("train.loss.focal_alpha=1,-2", "focal_alpha")])
def test_bad_values_name_the_key(override: str, key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        load_config(None, [override])
