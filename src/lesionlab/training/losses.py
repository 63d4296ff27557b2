"""Losses and class-weighting schemes, registered by name.

Class weights: ``inverse`` is ``W_c = N / (C * N_c)`` (the soft-attention study's formula); ``effective`` is the
effective-number weighting of Cui et al. (CVPR 2019), ``(1 - β) / (1 - β^N_c)`` normalised to sum to ``C``.
Focal loss is ``-α_t (1 - p_t)^γ log p_t`` (Lin et al. 2017) with a per-class ``α``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from lesionlab.config import ConfigError
from lesionlab.registry import Registry

if TYPE_CHECKING:
    from lesionlab.config import TrainConfig

CLASS_WEIGHTS: Registry[Callable[..., np.ndarray | None]] = Registry("class-weight scheme")
LOSSES: Registry[Callable[..., nn.Module]] = Registry("loss")


def _positive_counts(counts: np.ndarray, scheme: str) -> np.ndarray:
    counts = np.asarray(counts, dtype=np.float64)
    if (counts <= 0).any():
        raise ValueError(f"every class needs at least one training sample for {scheme} weights; counts={counts}")
    return counts


@CLASS_WEIGHTS.register("none", help="all classes weigh 1")
def no_weights(counts: np.ndarray, beta: float = 0.999) -> np.ndarray | None:
    return None


@CLASS_WEIGHTS.register("inverse", help="W_c = N / (C * N_c), inverse class frequency")
def inverse_frequency(counts: np.ndarray, beta: float = 0.999) -> np.ndarray:
    counts = _positive_counts(counts, "inverse")
    return counts.sum() / (len(counts) * counts)


@CLASS_WEIGHTS.register("effective", help="effective number of samples: (1-β)/(1-β^N_c), normalised to sum C")
def effective_number(counts: np.ndarray, beta: float = 0.999) -> np.ndarray:
    """Cui et al. 2019: a class of ``N_c`` samples is worth ``(1 - β^N_c) / (1 - β)`` effective samples."""
    if not 0 <= beta < 1:
        raise ValueError(f"effective-number beta must lie in [0, 1), got {beta}")
    counts = _positive_counts(counts, "effective-number")
    w = (1.0 - beta) / (1.0 - np.power(beta, counts))
    return w * len(counts) / w.sum()


def class_weights(scheme: str, counts: np.ndarray, beta: float = 0.999) -> torch.Tensor | None:
    """Per-class weights for ``counts`` (training-split class sizes) under ``scheme``; ``None`` for no weighting."""
    w = CLASS_WEIGHTS.get(scheme)(np.asarray(counts), beta=beta)
    return None if w is None else torch.as_tensor(w, dtype=torch.float32)


class FocalLoss(nn.Module):
    """``-α_t (1 - p_t)^γ log p_t``, averaged over the batch.

    With ``gamma=0`` and no ``alpha`` it is exactly cross-entropy. ``alpha`` is a per-class weight vector;
    label smoothing, when set, applies to the ``log p_t`` term only (``p_t`` stays the unsmoothed probability).
    """

    def __init__(self, gamma: float = 2.0, alpha: torch.Tensor | None = None, label_smoothing: float = 0.0) -> None:
        super().__init__()
        if gamma < 0:
            raise ValueError(f"focal gamma must be >= 0, got {gamma}")
        self.gamma = float(gamma)
        self.label_smoothing = float(label_smoothing)
        self.register_buffer("alpha", None if alpha is None else torch.as_tensor(alpha, dtype=torch.float32))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        log_p = F.log_softmax(logits.float(), dim=-1)
        log_pt = log_p.gather(1, target[:, None]).squeeze(1)
        ce = F.cross_entropy(logits.float(), target, reduction="none", label_smoothing=self.label_smoothing)
        loss = (1.0 - log_pt.exp()).clamp_min(0).pow(self.gamma) * ce if self.gamma else ce
        if self.alpha is not None:
            loss = self.alpha.to(loss.device)[target] * loss
        return loss.mean()


@LOSSES.register("ce", help="cross-entropy with optional class weights and label smoothing")
def cross_entropy(weight: torch.Tensor | None = None, label_smoothing: float = 0.0, **_: object) -> nn.Module:
    return nn.CrossEntropyLoss(weight=weight, label_smoothing=label_smoothing)


@LOSSES.register("focal", help="focal loss -α_t (1-p_t)^γ log p_t; α = the class weights unless given")
def focal(weight: torch.Tensor | None = None, label_smoothing: float = 0.0, gamma: float = 2.0,
          alpha: Sequence[float] | torch.Tensor | None = None, **_: object) -> nn.Module:
    alpha_t = torch.as_tensor(alpha, dtype=torch.float32) if alpha is not None else weight
    return FocalLoss(gamma=gamma, alpha=alpha_t, label_smoothing=label_smoothing)


def create_loss(name: str, weight: torch.Tensor | None = None, label_smoothing: float = 0.0,
                **options: object) -> nn.Module:
    """Build a registered loss; ``options`` (e.g. ``gamma``, ``alpha``) go to losses that take them."""
    return LOSSES.get(name)(weight=weight, label_smoothing=label_smoothing, **options)


def loss_from_config(cfg: TrainConfig, train_counts: np.ndarray) -> nn.Module:
    """The loss a :class:`TrainConfig` describes, weighted by the training split's class counts."""
    c = cfg.loss
    weights = class_weights(c.class_weights, train_counts, beta=c.effective_beta)
    alpha = c.focal_alpha
    if alpha is not None and len(alpha) != len(train_counts):
        raise ConfigError(f"train.loss.focal_alpha has {len(alpha)} values for {len(train_counts)} classes")
    return create_loss(c.name, weights, c.label_smoothing, gamma=c.focal_gamma, alpha=alpha)
