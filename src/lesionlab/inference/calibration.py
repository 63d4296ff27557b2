"""Calibration: expected calibration error (equal-width and equal-mass bins), Brier score, reliability data and
temperature scaling fitted on the validation split.

Temperature follows the pipeline of :func:`lesionlab.inference.predict.predict_probs`: each TTA view's logits
are divided by ``T`` before the softmax and the views' probabilities are averaged. Fitting therefore takes the
per-view logits ``(V, N, C)``; with one view (no TTA) dividing by ``T > 0`` never changes the arg-max.
"""

from __future__ import annotations

import logging
import math

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import softmax

logger = logging.getLogger(__name__)

BIN_STRATEGIES = ("uniform", "quantile")  # equal-width, equal-mass
T_BOUNDS = (0.05, 20.0)


def _check(y_true: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or len(p) != len(y) or len(y) == 0:
        raise ValueError(f"need probs (N, C) with N = len(y_true) > 0; got {p.shape} and {y.shape}")
    return y, p


def reliability_bins(y_true: np.ndarray, probs: np.ndarray, n_bins: int = 15,
                     strategy: str = "uniform") -> dict[str, np.ndarray]:
    """Top-label reliability data: per bin the mean confidence, the accuracy and the count.

    ``uniform`` uses equal-width confidence bins on [0, 1]; ``quantile`` uses bins holding (nearly) equal numbers
    of samples. Empty bins are dropped.
    """
    if strategy not in BIN_STRATEGIES:
        raise ValueError(f"strategy must be one of {BIN_STRATEGIES}, got {strategy!r}")
    if n_bins < 1:
        raise ValueError(f"n_bins must be positive, got {n_bins}")
    y, p = _check(y_true, probs)
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    if strategy == "uniform":
        bins = np.minimum((conf * n_bins).astype(np.int64), n_bins - 1)
    else:  # equal mass: rank-based so ties cannot empty a bin
        order = np.argsort(conf, kind="stable")
        bins = np.empty(len(conf), dtype=np.int64)
        bins[order] = np.arange(len(conf)) * n_bins // len(conf)
    count = np.bincount(bins, minlength=n_bins).astype(np.float64)
    keep = count > 0
    conf_sum = np.bincount(bins, weights=conf, minlength=n_bins)
    acc_sum = np.bincount(bins, weights=correct, minlength=n_bins)
    return {"confidence": conf_sum[keep] / count[keep], "accuracy": acc_sum[keep] / count[keep],
            "count": count[keep]}


def expected_calibration_error(y_true: np.ndarray, probs: np.ndarray, n_bins: int = 15,
                               strategy: str = "uniform") -> float:
    """ECE = Σ_b (n_b / N) |accuracy_b − confidence_b| over top-label confidence bins."""
    r = reliability_bins(y_true, probs, n_bins, strategy)
    return float(np.sum(r["count"] * np.abs(r["accuracy"] - r["confidence"])) / r["count"].sum())


def brier_score(y_true: np.ndarray, probs: np.ndarray) -> float:
    """Multi-class Brier score: mean over samples of Σ_c (p_c − 1[y = c])²  (0 is perfect, 2 the worst)."""
    y, p = _check(y_true, probs)
    onehot = np.eye(p.shape[1])[y]
    return float(((p - onehot) ** 2).sum(axis=1).mean())


def negative_log_likelihood(y_true: np.ndarray, probs: np.ndarray) -> float:
    y, p = _check(y_true, probs)
    return float(-np.log(np.clip(p[np.arange(len(y)), y], 1e-12, None)).mean())


def probs_from_view_logits(view_logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """``(V, N, C)`` logits of V test-time views → ``(N, C)`` probabilities: softmax(logits / T), view-averaged."""
    z = np.asarray(view_logits, dtype=np.float64)
    if z.ndim == 2:
        z = z[None]
    if z.ndim != 3:
        raise ValueError(f"view logits must be (V, N, C) or (N, C); got shape {z.shape}")
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    return softmax(z / temperature, axis=-1).mean(axis=0)


def fit_temperature(view_logits: np.ndarray, y_true: np.ndarray, bounds: tuple[float, float] = T_BOUNDS) -> float:
    """The temperature minimising the negative log-likelihood of ``y_true`` (fit it on validation data only)."""
    z = np.asarray(view_logits, dtype=np.float64)
    z = z[None] if z.ndim == 2 else z
    y = np.asarray(y_true, dtype=np.int64)
    if z.shape[1] != len(y) or len(y) == 0:
        raise ValueError(f"logits for {z.shape[1]} samples but {len(y)} labels")
    rows = np.arange(len(y))

    def nll(log_t: float) -> float:
        p = softmax(z / math.exp(log_t), axis=-1).mean(axis=0)
        return float(-np.log(np.clip(p[rows, y], 1e-12, None)).mean())

    res = minimize_scalar(nll, bounds=(math.log(bounds[0]), math.log(bounds[1])), method="bounded",
                          options={"xatol": 1e-4})
    t = float(math.exp(res.x))
    logger.debug("Fitted temperature %.4f (NLL %.4f → %.4f)", t, nll(0.0), res.fun)
    for bound, shape in ((bounds[0], "nearly flat (the model barely separates the classes)"),
                         (bounds[1], "confidently wrong")):
        if abs(res.x - math.log(bound)) < 0.01:
            logger.warning("The fitted temperature %.3f sits at its bound %g: the validation NLL would still fall "
                           "beyond it, so the logits of these %d validation images are %s; typical of a tiny or "
                           "barely trained run. The temperature is clamped to %g; train longer or on more data before "
                           "trusting the calibration.", t, bound, len(y), shape, bound)
    return t


def calibration_summary(y_true: np.ndarray, probs: np.ndarray, n_bins: int = 15) -> dict[str, float]:
    """ECE (equal-width and equal-mass bins), Brier score and NLL of one set of probabilities."""
    return {"ece": expected_calibration_error(y_true, probs, n_bins, "uniform"),
            "ece_equal_mass": expected_calibration_error(y_true, probs, n_bins, "quantile"),
            "brier": brier_score(y_true, probs), "nll": negative_log_likelihood(y_true, probs)}


def before_after(y_true: np.ndarray, view_logits: np.ndarray, temperature: float, n_bins: int = 15) -> dict:
    """``{"temperature": T, "before": summary at T=1, "after": summary at T}`` for one split."""
    return {"temperature": float(temperature),
            "before": calibration_summary(y_true, probs_from_view_logits(view_logits, 1.0), n_bins),
            "after": calibration_summary(y_true, probs_from_view_logits(view_logits, temperature), n_bins)}
