"""Classification metrics as pure functions over (truth, probabilities), built on scikit-learn.

Conventions (shared with the ISIC challenge scorer): balanced accuracy is the mean recall over the classes
present in the truth; a class absent from the truth gets NaN recall and NaN AUC with a warning, and is left
out of macro averages instead of scoring 0.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support, roc_auc_score, top_k_accuracy_score


class MetricWarning(UserWarning):
    """A metric is undefined for this data (e.g. a class absent from the truth)."""


def _check_inputs(y_true: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or len(probs) != len(y_true):
        raise ValueError(f"probs must be (N, C) with N = len(y_true); got {probs.shape} and {y_true.shape}")
    if len(y_true) == 0:
        raise ValueError("cannot compute metrics on an empty set")
    if y_true.min() < 0 or y_true.max() >= probs.shape[1]:
        raise ValueError(f"labels must lie in [0, {probs.shape[1]}); got {y_true.min()}..{y_true.max()}")
    return y_true, probs


def one_vs_rest_auc(y_true: np.ndarray, probs: np.ndarray, class_names: Sequence[str]) -> np.ndarray:
    """Per-class ROC AUC (class vs rest); NaN with a :class:`MetricWarning` where a class is absent or universal."""
    y_true, probs = _check_inputs(y_true, probs)
    out = np.full(probs.shape[1], np.nan)
    for c in range(probs.shape[1]):
        positives = y_true == c
        if positives.all() or not positives.any():
            warnings.warn(f"AUC undefined for class {class_names[c]!r}: it is "
                          f"{'absent from' if not positives.any() else 'the only class in'} the truth",
                          MetricWarning, stacklevel=2)
            continue
        out[c] = roc_auc_score(positives, probs[:, c])
    return out


def specificity_per_class(cm: np.ndarray) -> np.ndarray:
    """TN / (TN + FP) for each class of a confusion matrix (rows = truth)."""
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    fp = cm.sum(axis=0) - tp
    fn = cm.sum(axis=1) - tp
    tn = cm.sum() - tp - fp - fn
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(tn + fp > 0, tn / (tn + fp), np.nan)


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> float:
    """Mean per-class recall over the classes present in the truth (the ISIC challenge metric)."""
    cm = confusion_matrix(y_true, y_pred, labels=list(range(num_classes)))
    support = cm.sum(axis=1)
    present = support > 0
    return float((np.diag(cm)[present] / support[present]).mean())


def classification_metrics(y_true: np.ndarray, probs: np.ndarray, class_names: Sequence[str],
                           topk: Sequence[int] = (2, 3)) -> dict:
    """Every headline metric as a JSON-friendly dict.

    Keys: ``accuracy``, ``balanced_accuracy``, ``auc_macro``, ``top{k}_accuracy``, ``macro``, ``weighted``,
    ``micro`` (precision/recall/f1/specificity), ``per_class`` (one dict per class name), ``confusion_matrix``.
    """
    y_true, probs = _check_inputs(y_true, probs)
    n_cls = probs.shape[1]
    if len(class_names) != n_cls:
        raise ValueError(f"{len(class_names)} class names for {n_cls} probability columns")
    labels = list(range(n_cls))
    y_pred = probs.argmax(axis=1)
    cm = confusion_matrix(y_true, y_pred, labels=labels)
    support = cm.sum(axis=1)
    present = [c for c in labels if support[c] > 0]
    for c in labels:
        if support[c] == 0:
            warnings.warn(f"class {class_names[c]!r} is absent from the truth: recall/AUC are NaN and it is left out "
                          "of macro averages", MetricWarning, stacklevel=2)
    prec, rec, f1, _ = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0.0)
    rec = np.where(support > 0, rec, np.nan)
    f1 = np.where(support > 0, f1, np.nan)
    spec = specificity_per_class(cm)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MetricWarning)
        auc = one_vs_rest_auc(y_true, probs, class_names)

    def avg(kind: str) -> dict[str, float]:
        p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, labels=present, average=kind, zero_division=0.0)
        if kind == "micro":
            s = float(specificity_from_totals(cm))
        else:
            w = support[present] / support[present].sum() if kind == "weighted" else None
            s = float(np.average(spec[present], weights=w))
        return {"precision": float(p), "recall": float(r), "f1": float(f), "specificity": s}

    out: dict = {
        "n": len(y_true),
        "accuracy": float((y_pred == y_true).mean()),
        "balanced_accuracy": balanced_accuracy(y_true, y_pred, n_cls),
        "auc_macro": float(np.nanmean(auc)) if np.isfinite(auc).any() else float("nan"),
    }
    for k in topk:
        if k < n_cls:
            out[f"top{k}_accuracy"] = float(top_k_accuracy_score(y_true, probs, k=k, labels=labels))
    out.update({"macro": avg("macro"), "weighted": avg("weighted"), "micro": avg("micro")})
    out["per_class"] = {
        name: {"precision": float(prec[c]), "recall": float(rec[c]), "specificity": float(spec[c]),
               "f1": float(f1[c]), "auc": float(auc[c]), "support": int(support[c])}
        for c, name in enumerate(class_names)
    }
    out["confusion_matrix"] = cm.tolist()
    out["class_names"] = list(class_names)
    return out


def specificity_from_totals(cm: np.ndarray) -> float:
    """Micro-averaged specificity: pooled TN / (TN + FP) over all one-vs-rest problems."""
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    fp = cm.sum(axis=0) - tp
    fn = cm.sum(axis=1) - tp
    tn = cm.sum() - tp - fp - fn
    return float(tn.sum() / (tn.sum() + fp.sum()))


class PredictionAccumulator:
    """Collects (targets, probabilities) batch by batch; :meth:`compute` returns :func:`classification_metrics`."""

    def __init__(self, class_names: Sequence[str], topk: Sequence[int] = (2, 3)) -> None:
        self.class_names = list(class_names)
        self.topk = tuple(topk)
        self._y: list[np.ndarray] = []
        self._p: list[np.ndarray] = []

    def update(self, y_true: np.ndarray, probs: np.ndarray) -> None:
        self._y.append(np.asarray(y_true))
        self._p.append(np.asarray(probs))

    def compute(self) -> dict:
        return classification_metrics(np.concatenate(self._y), np.concatenate(self._p), self.class_names, self.topk)

    def reset(self) -> None:
        self._y.clear()
        self._p.clear()
