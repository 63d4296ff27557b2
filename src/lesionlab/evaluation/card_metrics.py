"""The figures of a model card: headline, per-class and triage metrics with bootstrap 95 % intervals that
resample lesions (all images of a lesion move together), computed from an evaluation's ``predictions.csv``."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import balanced_accuracy_score, roc_auc_score

from lesionlab.data.taxonomy import triage_priority
from lesionlab.evaluation.bootstrap import bootstrap_ci
from lesionlab.inference.triage import decide_triage

Metric = Callable[[np.ndarray, np.ndarray], float]


def lesion_bootstrap(y: np.ndarray, probs: np.ndarray, groups: Sequence[str], metrics: Mapping[str, Metric],
                     n_boot: int = 1000, seed: int = 0) -> dict[str, dict[str, float]]:
    """``{name: {value, lo, hi}}``: each metric on the data and its 95 % percentile interval over ``n_boot``
    resamples of whole groups (lesions), from :func:`lesionlab.evaluation.bootstrap.bootstrap_ci` (the same seed
    gives every metric the same resamples)."""
    out = {}
    for name, fn in metrics.items():
        lo, hi = bootstrap_ci(lambda idx, fn=fn: _safe(fn, y[idx], probs[idx]), groups, n_boot=n_boot, seed=seed)
        out[name] = {"value": _safe(fn, y, probs), "lo": lo, "hi": hi}
    return out


def _safe(fn: Metric, y: np.ndarray, p: np.ndarray) -> float:
    with warnings.catch_warnings():  # an empty subset or a single class in a resample: NaN, skipped
        warnings.simplefilter("ignore")
        try:
            return float(fn(y, p))
        except ValueError:
            return float("nan")


def priority1_calls(probs: np.ndarray, class_names: Sequence[str], thresholds: Mapping[str, float]) -> np.ndarray:
    """Whether the predictor's triage rule (operating thresholds, then top-1) gives priority 1, per image."""
    return np.array([decide_triage(p, class_names, thresholds).priority == 1 for p in probs])


def card_metrics(predictions: pd.DataFrame, class_names: Sequence[str], thresholds: Mapping[str, float],
                 lesions: Sequence[str], n_boot: int = 1000, positive: str | None = None) -> dict:
    """Headline, per-class and priority-1 figures with lesion-bootstrap CIs from a ``predictions.csv`` frame.

    ``positive`` (e.g. ``mel``) adds that class's one-vs-rest AUC and sensitivity at the triage operating point,
    for external sets whose truth covers only some classes.
    """
    names = list(class_names)
    y = predictions["truth"].map({c: i for i, c in enumerate(names)}).to_numpy()
    probs = predictions[[f"p_{c}" for c in names]].to_numpy()
    p1_true = np.array([triage_priority(c) == 1 for c in predictions["truth"]])
    p1_call = priority1_calls(probs, names, thresholds)
    present = sorted(set(y.tolist()))
    k = len(names)  # columns k and k+1 carry the priority-1 truth and call through the resampling

    def auc_macro(yy: np.ndarray, pp: np.ndarray) -> float:
        return float(np.mean([roc_auc_score(yy == c, pp[:, c]) for c in present]))

    metrics: dict[str, Metric] = {
        "balanced_accuracy": lambda yy, pp: balanced_accuracy_score(yy, pp[:, :k].argmax(1)),
        "accuracy": lambda yy, pp: float((yy == pp[:, :k].argmax(1)).mean()),
        "auc_macro": auc_macro,
    }
    for c in present:
        metrics[f"recall_{names[c]}"] = lambda yy, pp, c=c: float((pp[yy == c, :k].argmax(1) == c).mean())
        metrics[f"auc_{names[c]}"] = lambda yy, pp, c=c: roc_auc_score(yy == c, pp[:, c])
    aug = np.column_stack([probs, p1_true, p1_call])
    metrics["priority1_sensitivity"] = lambda yy, pp: float(pp[pp[:, k] == 1, k + 1].mean())
    metrics["priority1_specificity"] = lambda yy, pp: float(1 - pp[pp[:, k] == 0, k + 1].mean())
    if positive is not None and positive in names:
        c = names.index(positive)
        metrics[f"{positive}_sensitivity_at_operating_point"] = (
            lambda yy, pp, c=c: float(pp[yy == c, k + 1].mean()))
    out = lesion_bootstrap(y, aug, lesions, metrics, n_boot=n_boot)
    return {"n_images": len(y), "n_lesions": len(set(lesions)),
            "class_counts": {names[c]: int((y == c).sum()) for c in present}, "figures": out}


__all__ = ["card_metrics", "lesion_bootstrap", "priority1_calls"]
