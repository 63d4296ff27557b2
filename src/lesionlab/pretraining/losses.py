"""The VAE objective: reconstruction loss + β·KL, with β warm-up schedules registered by name.

Per image, the reconstruction term is summed over pixels and channels (targets in ``[0, 1]``) and the KL term
``KL(N(μ, σ²) ‖ N(0, I)) = -½ Σ (1 + log σ² - μ² - σ²)`` over latent dimensions; both are averaged over the batch.
With β = 1 the loss is the negative ELBO. Warm-up schedules start β at 0 so the decoder learns to use the latent
code before the KL term pulls the posterior towards the prior (Bowman et al. 2016: linear; Fu et al. 2019: cyclical).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from lesionlab.registry import Registry

#: ``(logits, target) -> (B,)`` reconstruction loss per image.
RECONSTRUCTION: Registry[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = Registry("reconstruction loss")
#: ``step -> β``.
BetaSchedule = Callable[[int], float]
BETA_SCHEDULES: Registry[Callable[..., BetaSchedule]] = Registry("beta schedule")


@RECONSTRUCTION.register("mse", help="squared error of sigmoid(logits) against the [0, 1] image, summed per image")
def mse_reconstruction(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (torch.sigmoid(logits.float()) - target).pow(2).flatten(1).sum(1)


@RECONSTRUCTION.register("bce", help="binary cross-entropy of the logits against the [0, 1] image, summed per image")
def bce_reconstruction(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits.float(), target, reduction="none").flatten(1).sum(1)


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """``KL(N(μ, σ²) ‖ N(0, I))`` per sample ``(B,)``; never negative."""
    return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)


@dataclass(frozen=True)
class ELBOTerms:
    """Batch means: ``loss = recon + β·kl``."""

    loss: torch.Tensor
    recon: torch.Tensor
    kl: torch.Tensor
    beta: float


def vae_loss(logits: torch.Tensor, target: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, beta: float,
             reconstruction: str = "mse") -> ELBOTerms:
    """Reconstruction (``reconstruction`` by name) + ``beta`` · KL, averaged over the batch."""
    recon = RECONSTRUCTION.get(reconstruction)(logits, target).mean()
    kl = kl_divergence(mu.float(), logvar.float()).mean()
    return ELBOTerms(recon + beta * kl, recon, kl, float(beta))


@BETA_SCHEDULES.register("constant", help="β from the first step (no warm-up)")
def constant_beta(beta: float, **_: object) -> BetaSchedule:
    return lambda step: float(beta)


@BETA_SCHEDULES.register("linear", help="β rises linearly from 0 over warmup_steps, then stays (Bowman et al.)")
def linear_beta(beta: float, warmup_steps: int = 0, **_: object) -> BetaSchedule:
    def schedule(step: int) -> float:
        return float(beta) if warmup_steps <= 0 else float(beta) * min(1.0, step / warmup_steps)

    return schedule


@BETA_SCHEDULES.register("cyclical", help="cycles of a linear rise (ratio of the cycle) then a plateau (Fu et al.)")
def cyclical_beta(beta: float, total_steps: int = 1, cycles: int = 4, ratio: float = 0.5, **_: object) -> BetaSchedule:
    period = max(1.0, total_steps / max(1, cycles))

    def schedule(step: int) -> float:
        phase = (step % period) / period
        return float(beta) * min(1.0, phase / ratio)

    return schedule


def create_beta_schedule(name: str, *, beta: float, total_steps: int, warmup_steps: int = 0, cycles: int = 4,
                         ratio: float = 0.5) -> BetaSchedule:
    """The registered schedule ``name`` as a function of the optimisation step."""
    return BETA_SCHEDULES.get(name)(beta=beta, total_steps=total_steps, warmup_steps=warmup_steps, cycles=cycles,
                                    ratio=ratio)
