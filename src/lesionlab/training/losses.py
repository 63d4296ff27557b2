"""Losses and class-weighting schemes, registered by name."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from lesionlab.registry import Registry

CLASS_WEIGHTS: Registry[Callable[[np.ndarray], np.ndarray | None]] = Registry("class-weight scheme")
LOSSES: Registry[Callable[..., nn.Module]] = Registry("loss")


@CLASS_WEIGHTS.register("none", help="all classes weigh 1")
def no_weights(counts: np.ndarray) -> np.ndarray | None:
    return None


@CLASS_WEIGHTS.register("inverse", help="W_c = N / (C * N_c), inverse class frequency")
def inverse_frequency(counts: np.ndarray) -> np.ndarray:
    counts = np.asarray(counts, dtype=np.float64)
    if (counts <= 0).any():
        raise ValueError(f"every class needs at least one training sample for inverse weights; counts={counts}")
    return counts.sum() / (len(counts) * counts)


def class_weights(scheme: str, counts: np.ndarray) -> torch.Tensor | None:
    w = CLASS_WEIGHTS.get(scheme)(np.asarray(counts))
    return None if w is None else torch.as_tensor(w, dtype=torch.float32)


@LOSSES.register("ce", help="cross-entropy with optional class weights and label smoothing")
def cross_entropy(weight: torch.Tensor | None = None, label_smoothing: float = 0.0) -> nn.Module:
    return nn.CrossEntropyLoss(weight=weight, label_smoothing=label_smoothing)


def create_loss(name: str, weight: torch.Tensor | None = None, label_smoothing: float = 0.0) -> nn.Module:
    return LOSSES.get(name)(weight=weight, label_smoothing=label_smoothing)
