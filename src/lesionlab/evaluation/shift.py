"""Dataset shift before labels: is a clinic's image set unlike the data a model was judged on?

Three figures for a target set against a reference set (e.g. the model's own test split), none needing labels:

- the predicted class mix of each and their total-variation distance;
- the OOD-flag rate (where the model carries a detector);
- a two-sample test on the model's features: the maximum mean discrepancy (MMD², unbiased, Gaussian kernel with
  the median-distance bandwidth; Gretton et al., JMLR 2012) with a permutation p-value.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy.spatial.distance import cdist


def _mmd2(k: np.ndarray, n: int) -> float:
    """Unbiased MMD² from the pooled kernel matrix (first ``n`` rows: sample A)."""
    kxx, kyy, kxy = k[:n, :n], k[n:, n:], k[:n, n:]
    m = len(k) - n
    return float((kxx.sum() - np.trace(kxx)) / (n * (n - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
                 - 2 * kxy.mean())


def mmd_test(a: np.ndarray, b: np.ndarray, *, permutations: int = 500, max_n: int = 400,
             seed: int = 0) -> tuple[float, float]:
    """(MMD², permutation p-value) between feature sets ``a`` and ``b`` (rows are samples; at most ``max_n`` of
    each, drawn at random). Features are standardised on the pooled sample first."""
    rng = np.random.default_rng(seed)
    a = np.asarray(a, np.float64)[rng.permutation(len(a))[:max_n]]
    b = np.asarray(b, np.float64)[rng.permutation(len(b))[:max_n]]
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"a two-sample test needs at least 2 images per set, got {len(a)} and {len(b)}")
    pooled = np.concatenate([a, b])
    pooled = (pooled - pooled.mean(0)) / (pooled.std(0) + 1e-8)
    d2 = cdist(pooled, pooled, "sqeuclidean")
    bandwidth = np.median(d2[np.triu_indices(len(d2), 1)]) or 1.0
    k = np.exp(-d2 / bandwidth)
    n = len(a)
    observed = _mmd2(k, n)
    exceed = 0
    for _ in range(permutations):
        p = rng.permutation(len(k))
        exceed += _mmd2(k[np.ix_(p, p)], n) >= observed
    return observed, (1 + exceed) / (1 + permutations)


def class_mix(probs: np.ndarray, class_names: Sequence[str]) -> dict[str, float]:
    """Share of images per predicted (top-1) class."""
    top = np.asarray(probs).argmax(1)
    return {c: float((top == i).mean()) for i, c in enumerate(class_names)}


@dataclass(frozen=True)
class ShiftSummary:
    """One target set against the reference set."""

    target: str
    reference: str
    n_target: int
    n_reference: int
    predicted_mix: dict[str, float]
    reference_mix: dict[str, float]
    mix_distance: float  # total variation distance between the two predicted class mixes
    ood_rate: float | None
    reference_ood_rate: float | None
    mmd2: float
    p_value: float

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def verdict(self) -> str:
        return ("shifted: the features differ from the reference (p < 0.01)" if self.p_value < 0.01 else
                "no shift detected at p < 0.01")


def shift_summary(target: str, reference: str, features: np.ndarray, ref_features: np.ndarray, probs: np.ndarray,
                  ref_probs: np.ndarray, class_names: Sequence[str], *, ood: np.ndarray | None = None,
                  ref_ood: np.ndarray | None = None, permutations: int = 500, seed: int = 0) -> ShiftSummary:
    mix, ref_mix = class_mix(probs, class_names), class_mix(ref_probs, class_names)
    mmd2, p = mmd_test(features, ref_features, permutations=permutations, seed=seed)
    return ShiftSummary(target, reference, len(features), len(ref_features), mix, ref_mix,
                        0.5 * float(sum(abs(mix[c] - ref_mix[c]) for c in class_names)),
                        None if ood is None else float(np.mean(ood)),
                        None if ref_ood is None else float(np.mean(ref_ood)), mmd2, p)
