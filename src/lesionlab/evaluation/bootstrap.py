"""Percentile bootstrap confidence intervals that resample lesions (or patients), not images: images of one
lesion are not independent, so resampling them one by one would give intervals that are too narrow."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from scipy.stats import rankdata


def binary_auc(positive: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC by the rank-sum (Mann-Whitney) formula; NaN when only one class is present."""
    positive = np.asarray(positive, dtype=bool)
    n1, n0 = int(positive.sum()), int((~positive).sum())
    if n1 == 0 or n0 == 0:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[positive].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def group_members(groups: Sequence[object]) -> list[np.ndarray]:
    """Row positions of each group (lesion or patient id), in first-appearance order."""
    codes, _ = pd.factorize(pd.Series(list(groups), dtype=object).astype(str), sort=False)
    order = np.argsort(codes, kind="stable")
    return np.split(order, np.cumsum(np.bincount(codes))[:-1]) if len(codes) else []


def bootstrap_ci(stat: Callable[[np.ndarray], float], groups: Sequence[object], *, n_boot: int = 1000,
                 seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """``level`` percentile interval of ``stat(row_positions)`` over ``n_boot`` resamples of whole groups.

    Resamples where the statistic is undefined (NaN, e.g. no positive drawn) are skipped; fewer than half
    defined gives ``(nan, nan)``.
    """
    members = group_members(groups)
    if not members or n_boot < 1:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_boot):
        pick = rng.integers(0, len(members), len(members))
        value = stat(np.concatenate([members[i] for i in pick]))
        if np.isfinite(value):
            values.append(value)
    if len(values) < n_boot / 2:
        return float("nan"), float("nan")
    tail = (1 - level) / 2
    lo, hi = np.quantile(values, [tail, 1 - tail])
    return float(lo), float(hi)
