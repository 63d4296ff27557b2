"""The "unsure" flag: a confidence score with a threshold chosen on the run's validation split.

The score is the maximum softmax probability (MSP; Hendrycks & Gimpel, ICLR 2017) of the calibrated, TTA-averaged
probabilities, i.e. exactly what the predictor reports. The threshold is the ``1 - coverage`` quantile of the
MSP of the *correctly* classified validation images, so ``coverage`` (default 95 %) of the cases the model gets
right pass as "sure" and predictions less confident than that are flagged — the usual in-distribution
operating point of out-of-distribution detectors (threshold at 95 % TPR).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger(__name__)

#: Below this many correctly classified validation images the threshold uses all validation images.
MIN_CORRECT = 20


@dataclass(frozen=True)
class UnsureThreshold:
    """A fitted threshold and the sentence that explains where it came from."""

    score: str
    threshold: float
    rule: str


def max_softmax(probs: np.ndarray) -> np.ndarray:
    """The MSP confidence score per row of ``(N, C)`` probabilities."""
    return np.asarray(probs, dtype=np.float64).max(axis=1)


def fit_unsure_threshold(probs: np.ndarray, targets: np.ndarray, coverage: float = 0.95) -> UnsureThreshold | None:
    """Choose the MSP threshold on validation probabilities ``(N, C)`` and labels ``(N,)``.

    Returns ``None`` (with a warning) when there is no validation data to fit it on.
    """
    if not 0 < coverage < 1:
        raise ValueError(f"coverage must lie in (0, 1), got {coverage}")
    probs, targets = np.asarray(probs), np.asarray(targets)
    if len(probs) == 0:
        logger.warning("No validation images: the predictor's 'unsure' flag will be unavailable")
        return None
    score = max_softmax(probs)
    correct = probs.argmax(axis=1) == targets
    pool, which = ((score[correct], "correctly classified only") if correct.sum() >= MIN_CORRECT else
                   (score, f"all, as fewer than {MIN_CORRECT} were classified correctly"))
    threshold = float(np.quantile(pool, 1 - coverage))
    flagged = float((score < threshold).mean())
    rule = (f"max softmax probability < {threshold:.3f}: the {100 * (1 - coverage):g}th percentile of the "
            f"{len(pool)} validation images ({which}; flags {100 * flagged:.0f}% of all {len(probs)})")
    return UnsureThreshold("msp", threshold, rule)


def is_unsure(probs: np.ndarray, threshold: float) -> np.ndarray:
    """Boolean per row: confidence below the threshold."""
    return max_softmax(probs) < threshold
