"""Batch samplers for the training loader, registered by name: plain shuffling, class-balanced sampling, and
source-balanced sampling for training on several populations (``data.dataset: merged``)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch.utils.data import Sampler, WeightedRandomSampler

from lesionlab.config import ConfigError
from lesionlab.registry import Registry

#: ``(targets, seed, sources) -> Sampler | None``; ``None`` means "shuffle" (the DataLoader's own random order).
#: ``sources``: each sample's population (the merged table's ``source`` column), or ``None`` for a single source.
SAMPLERS: Registry[Callable[[np.ndarray, int, np.ndarray | None], Sampler | None]] = Registry("sampler")


def _weighted(weights: np.ndarray, seed: int) -> Sampler:
    """Draw ``len(weights)`` samples per epoch with replacement, proportionally to ``weights``."""
    generator = torch.Generator().manual_seed(seed)
    return WeightedRandomSampler(torch.as_tensor(weights, dtype=torch.double), num_samples=len(weights),
                                 replacement=True, generator=generator)


def _group_weights(keys: np.ndarray) -> np.ndarray:
    """``1 / N_k`` per sample of group ``k``: every group contributes the same expected number per epoch."""
    _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    return 1.0 / counts[inverse]


def _several_sources(sources: np.ndarray | None, name: str) -> np.ndarray:
    if sources is None or len(np.unique(sources)) < 2:
        raise ConfigError(f"train.sampling.sampler={name} balances populations: it needs training data from several "
                          "sources (data.dataset: merged, see configs/two-populations.yaml)")
    return np.asarray(sources).astype(str)


@SAMPLERS.register("random", help="shuffle every epoch (no re-weighting)")
def random_sampler(targets: np.ndarray, seed: int, sources: np.ndarray | None = None) -> Sampler | None:
    return None


@SAMPLERS.register("balanced", help="class-balanced: draw with replacement, each class equally likely")
def balanced_sampler(targets: np.ndarray, seed: int, sources: np.ndarray | None = None) -> Sampler:
    """Weights ``1 / N_c`` per sample, so every class contributes the same expected number per epoch."""
    return _weighted(_group_weights(np.asarray(targets, dtype=np.int64)), seed)


@SAMPLERS.register("source-balanced", help="population-balanced: each training source equally likely per draw, "
                   "its own class mix kept (several sources only)")
def source_balanced_sampler(targets: np.ndarray, seed: int, sources: np.ndarray | None = None) -> Sampler:
    """Weights ``1 / N_s``: a small population is drawn as often as a large one, so the model cannot win by
    fitting the larger archive alone."""
    return _weighted(_group_weights(_several_sources(sources, "source-balanced")), seed)


@SAMPLERS.register("source-class-balanced", help="each (source, class) pair equally likely per draw (several "
                   "sources only)")
def source_class_balanced_sampler(targets: np.ndarray, seed: int, sources: np.ndarray | None = None) -> Sampler:
    """Weights ``1 / N_(s, c)``: balances classes within every population and populations against each other."""
    src = _several_sources(sources, "source-class-balanced")
    keys = np.char.add(np.char.add(src, "\x00"), np.asarray(targets).astype(str))
    return _weighted(_group_weights(keys), seed)


def create_sampler(name: str, targets: np.ndarray, seed: int = 0, sources: np.ndarray | None = None) -> Sampler | None:
    """The registered sampler ``name`` over ``targets`` (and their ``sources``, for the population samplers)."""
    return SAMPLERS.get(name)(np.asarray(targets), seed, None if sources is None else np.asarray(sources))
