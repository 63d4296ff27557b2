"""Sensitivity-first operating points: thresholds chosen on validation, reported on test.

For every class (one vs rest) and for the triage grouping (priority 1 — MEL/BCC/SCC — vs the rest, scored by the
summed priority-1 probability) this gives sensitivity at fixed specificities and specificity at fixed
sensitivities. :func:`severity_thresholds` picks the per-class thresholds stored in ``Preprocessing.thresholds``
and :func:`most_severe_suspected` is the decision rule they drive (the same rule as
:func:`lesionlab.inference.triage.decide_triage`): a class whose probability reaches its threshold wins over a
less urgent top-1 diagnosis.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix, roc_curve

from lesionlab.data.taxonomy import triage_priority
from lesionlab.evaluation.metrics import MetricWarning

PRIORITY1 = "priority 1 vs rest"


def _roc(positive: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    fpr, tpr, thr = roc_curve(positive, score, drop_intermediate=False)
    thr = thr.astype(np.float64).copy()
    thr[~np.isfinite(thr)] = np.nextafter(float(np.max(score)), np.inf)  # "flag nothing", JSON-safe
    return 1.0 - fpr, tpr, thr


def _degenerate(positive: np.ndarray) -> bool:
    return bool(positive.all() or not positive.any())


def threshold_for_specificity(positive: np.ndarray, score: np.ndarray, specificity: float) -> float:
    """The lowest threshold (``score >= t`` flags) whose specificity on these data is at least ``specificity``.

    Lowest = most sensitive among those meeting the specificity target. NaN when a class is absent or universal.
    """
    positive = np.asarray(positive, dtype=bool)
    if _degenerate(positive):
        return float("nan")
    spec, tpr, thr = _roc(positive, np.asarray(score, dtype=np.float64))
    ok = np.flatnonzero(spec >= specificity - 1e-12)  # never empty: the first threshold flags nothing
    return float(thr[ok[np.argmax(tpr[ok])]])


def threshold_for_sensitivity(positive: np.ndarray, score: np.ndarray, sensitivity: float, *,
                              conformal: bool = False) -> float:
    """The highest threshold whose sensitivity on these data is at least ``sensitivity`` (most specific such).

    ``conformal``: aim at *new* positives instead (class-conditional split conformal; Vovk et al. 2005, Angelopoulos
    & Bates 2021): the k-th lowest of the n positive scores, k = floor((n + 1)(1 - sensitivity)) (at least 1), which a
    new positive exchangeable with them reaches with probability >= (n + 1 - k) / (n + 1). With few positives the
    in-sample rule's sensitivity on new images falls short of its target; this one does not, on average.
    """
    positive = np.asarray(positive, dtype=bool)
    if _degenerate(positive):
        return float("nan")
    if conformal:
        scores = np.sort(np.asarray(score, dtype=np.float64)[positive])
        k = max(1, int(np.floor((len(scores) + 1) * (1 - sensitivity) + 1e-9)))
        return float(scores[k - 1])
    _, tpr, thr = _roc(positive, np.asarray(score, dtype=np.float64))
    ok = np.flatnonzero(tpr >= sensitivity - 1e-12)
    return float(thr[ok[0]])


def rates_at(positive: np.ndarray, score: np.ndarray, threshold: float) -> tuple[float, float]:
    """(sensitivity, specificity) when ``score >= threshold`` flags a sample as positive."""
    positive = np.asarray(positive, dtype=bool)
    flagged = np.asarray(score) >= threshold
    sens = float(flagged[positive].mean()) if positive.any() and np.isfinite(threshold) else float("nan")
    spec = float((~flagged[~positive]).mean()) if (~positive).any() and np.isfinite(threshold) else float("nan")
    return sens, spec


def priority1_indices(class_names: Sequence[str]) -> list[int]:
    return [i for i, c in enumerate(class_names) if triage_priority(c) == 1]


def binary_problems(y: np.ndarray, probs: np.ndarray,
                    class_names: Sequence[str]) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """(name, positive mask, score) for each class vs rest, then priority 1 vs rest when the taxonomy has one."""
    y = np.asarray(y)
    for c, name in enumerate(class_names):
        yield name, y == c, probs[:, c]
    p1 = priority1_indices(class_names)
    if p1 and len(p1) < len(class_names):
        yield PRIORITY1, np.isin(y, p1), probs[:, p1].sum(axis=1)


def operating_point_table(y_val: np.ndarray, p_val: np.ndarray, y_test: np.ndarray, p_test: np.ndarray,
                          class_names: Sequence[str], specificities: Sequence[float] = (0.8, 0.9, 0.95),
                          sensitivities: Sequence[float] = (0.9, 0.95)) -> pd.DataFrame:
    """One row per (target, criterion): the validation threshold and its sensitivity/specificity on val and test."""
    rows = []
    test_problems = {name: (pos, score) for name, pos, score in binary_problems(y_test, p_test, class_names)}
    for name, pos_v, score_v in binary_problems(y_val, p_val, class_names):
        pos_t, score_t = test_problems[name]
        if _degenerate(pos_v) or _degenerate(pos_t):
            warnings.warn(f"operating points undefined for {name!r}: absent from (or the only class in) the "
                          "validation or test truth", MetricWarning, stacklevel=2)
        criteria = [(f"sensitivity @ specificity ≥ {s:.0%}", threshold_for_specificity(pos_v, score_v, s))
                    for s in specificities]
        criteria += [(f"specificity @ sensitivity ≥ {s:.0%}", threshold_for_sensitivity(pos_v, score_v, s))
                     for s in sensitivities]
        for criterion, t in criteria:
            vs, vp = rates_at(pos_v, score_v, t)
            ts, tp = rates_at(pos_t, score_t, t)
            rows.append({"target": name, "criterion": criterion, "threshold": t, "val_sensitivity": vs,
                         "val_specificity": vp, "test_sensitivity": ts, "test_specificity": tp})
    return pd.DataFrame(rows)


def severity_thresholds(y_val: np.ndarray, p_val: np.ndarray, class_names: Sequence[str],
                        sensitivity: float, *, conformal: bool = False) -> dict[str, float]:
    """Per-class thresholds for the priority-1 classes reaching ``sensitivity`` on validation (one vs rest;
    ``conformal``: on new images, see :func:`threshold_for_sensitivity`)."""
    y_val = np.asarray(y_val)
    out = {}
    for c in priority1_indices(class_names):
        t = threshold_for_sensitivity(y_val == c, p_val[:, c], sensitivity, conformal=conformal)
        if np.isfinite(t):
            out[class_names[c]] = float(t)
    return out


def most_severe_suspected(probs: np.ndarray, class_names: Sequence[str],
                          thresholds: Mapping[str, float]) -> np.ndarray:
    """Decision per row: the most urgent class whose probability reaches its threshold (highest probability
    among equally urgent ones) when it is more urgent than the top-1 diagnosis; otherwise the top-1 class."""
    probs = np.asarray(probs, dtype=np.float64)
    decision = probs.argmax(axis=1)
    priority = np.array([triage_priority(c) for c in class_names])
    best_priority = priority[decision]
    best_prob = np.full(len(probs), -np.inf)
    chosen = decision.copy()
    for c, name in sorted(enumerate(class_names), key=lambda item: priority[item[0]]):
        if name not in thresholds:
            continue
        hit = probs[:, c] >= thresholds[name]
        better = hit & ((priority[c] < best_priority) | ((priority[c] == best_priority) & (probs[:, c] > best_prob)))
        better &= priority[c] < priority[decision]
        chosen[better] = c
        best_priority = np.where(better, priority[c], best_priority)
        best_prob = np.where(better, probs[:, c], best_prob)
    return chosen


def rule_summary(y: np.ndarray, probs: np.ndarray, class_names: Sequence[str],
                 thresholds: Mapping[str, float]) -> dict:
    """Confusion matrices (class and triage level) of the top-1 rule and the most-severe-suspected rule."""
    y = np.asarray(y)
    labels = list(range(len(class_names)))
    top1 = probs.argmax(axis=1)
    rule = most_severe_suspected(probs, class_names, thresholds)
    priority = np.array([triage_priority(c) for c in class_names])
    out = {"thresholds": dict(thresholds), "class_names": list(class_names)}
    for key, pred in (("top1", top1), ("most_severe", rule)):
        cm_tri = confusion_matrix(priority[y], priority[pred], labels=[1, 2, 3])
        p1 = priority[y] == 1
        out[key] = {"confusion_matrix": confusion_matrix(y, pred, labels=labels).tolist(),
                    "triage_confusion_matrix": cm_tri.tolist(),
                    "priority1_sensitivity": float((priority[pred][p1] == 1).mean()) if p1.any() else float("nan"),
                    "priority1_specificity": float((priority[pred][~p1] != 1).mean()) if (~p1).any() else float("nan"),
                    "accuracy": float((pred == y).mean())}
    return out
