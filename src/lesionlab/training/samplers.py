"""Batch samplers for the training loader, registered by name: plain shuffling or class-balanced sampling."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch.utils.data import Sampler, WeightedRandomSampler

from lesionlab.registry import Registry

#: ``(targets, seed) -> Sampler | None``; ``None`` means "shuffle" (the DataLoader's own random order).
SAMPLERS: Registry[Callable[[np.ndarray, int], Sampler | None]] = Registry("sampler")


@SAMPLERS.register("random", help="shuffle every epoch (no re-weighting)")
def random_sampler(targets: np.ndarray, seed: int) -> Sampler | None:
    return None


@SAMPLERS.register("balanced", help="class-balanced: draw with replacement, each class equally likely")
def balanced_sampler(targets: np.ndarray, seed: int) -> Sampler:
    """Weights ``1 / N_c`` per sample, so every class contributes the same expected number per epoch."""
    targets = np.asarray(targets, dtype=np.int64)
    counts = np.bincount(targets)
    weights = 1.0 / counts[targets]
    generator = torch.Generator().manual_seed(seed)
    return WeightedRandomSampler(torch.as_tensor(weights, dtype=torch.double), num_samples=len(targets),
                                 replacement=True, generator=generator)


def create_sampler(name: str, targets: np.ndarray, seed: int = 0) -> Sampler | None:
    return SAMPLERS.get(name)(np.asarray(targets), seed)
