"""The VAE objective: KL ≥ 0 (and exact), reconstruction losses, β warm-up schedule values."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Normal
from torch.distributions import kl_divergence as torch_kl

from lesionlab.pretraining.losses import (
    BETA_SCHEDULES,
    RECONSTRUCTION,
    create_beta_schedule,
    kl_divergence,
    vae_loss,
)
from lesionlab.registry import UnknownNameError


def test_kl_is_non_negative_and_matches_torch() -> None:
    torch.manual_seed(0)
    mu, logvar = torch.randn(500, 16) * 3, torch.randn(500, 16) * 3
    kl = kl_divergence(mu, logvar)
    assert (kl >= 0).all()
    reference = torch_kl(Normal(mu, (0.5 * logvar).exp()), Normal(0.0, 1.0)).sum(1)
    assert torch.allclose(kl, reference, rtol=1e-4, atol=1e-4)
    assert torch.allclose(kl_divergence(torch.zeros(3, 4), torch.zeros(3, 4)), torch.zeros(3))


def test_reconstruction_losses() -> None:
    logits = torch.tensor([[[[0.0, 2.0]]]])  # sigmoid: 0.5, 0.881
    target = torch.tensor([[[[0.5, 1.0]]]])
    mse = RECONSTRUCTION.get("mse")(logits, target)
    assert mse.item() == pytest.approx((1 - torch.sigmoid(torch.tensor(2.0))).item() ** 2, rel=1e-5)
    bce = RECONSTRUCTION.get("bce")(logits, target)
    expected = -(0.5 * torch.log(torch.tensor(0.5)) * 2) - torch.log(torch.sigmoid(torch.tensor(2.0)))
    assert bce.item() == pytest.approx(expected.item(), rel=1e-5)
    with pytest.raises(UnknownNameError, match="bce, mse"):
        RECONSTRUCTION.get("l1")


@pytest.mark.parametrize("name", ["mse", "bce"])
def test_loss_is_recon_plus_beta_kl(name: str) -> None:
    torch.manual_seed(1)
    logits, target = torch.randn(4, 3, 8, 8), torch.rand(4, 3, 8, 8)
    mu, logvar = torch.randn(4, 5), torch.randn(4, 5)
    t = vae_loss(logits, target, mu, logvar, beta=0.3, reconstruction=name)
    assert t.loss.item() == pytest.approx(t.recon.item() + 0.3 * t.kl.item(), rel=1e-6)
    assert t.kl.item() == pytest.approx(kl_divergence(mu, logvar).mean().item(), rel=1e-6)


def test_linear_warmup_values() -> None:
    s = create_beta_schedule("linear", beta=2.0, total_steps=100, warmup_steps=10)
    assert [s(k) for k in (0, 5, 10, 50)] == pytest.approx([0.0, 1.0, 2.0, 2.0])
    assert create_beta_schedule("linear", beta=0.5, total_steps=10, warmup_steps=0)(0) == 0.5


def test_cyclical_values() -> None:
    # 4 cycles of 25 steps; β rises over the first half of each cycle, then holds
    s = create_beta_schedule("cyclical", beta=1.0, total_steps=100, cycles=4, ratio=0.5)
    assert [s(k) for k in (0, 5, 12.5, 20, 24)] == pytest.approx([0.0, 0.4, 1.0, 1.0, 1.0])
    assert [s(k) for k in (25, 30, 50, 75, 99)] == pytest.approx([0.0, 0.4, 0.0, 0.0, 1.0])


def test_constant_and_registry() -> None:
    assert create_beta_schedule("constant", beta=0.7, total_steps=10)(0) == 0.7
    assert set(BETA_SCHEDULES.names()) == {"constant", "linear", "cyclical"}
    with pytest.raises(UnknownNameError, match="Did you mean 'cyclical'"):
        create_beta_schedule("cyclic", beta=1.0, total_steps=10)
