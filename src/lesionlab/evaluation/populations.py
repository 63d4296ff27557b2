"""Figures per population: the headline metrics of each source of a merged table, and the worst of them.

A model trained on two populations is judged on each (a mean over the pooled split hides the smaller one), and a
recipe is chosen by the worse of the two: :func:`figures_by_source` gives balanced accuracy, macro AUC, melanoma AUC
and the priority-1 operating point with lesion-level bootstrap intervals per source, plus ``worst``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from lesionlab.evaluation.bootstrap import (
    DEFAULT_REPLICATES,
    binary_auc,
    bootstrap_ci,
    bootstrap_cis,
    priority1,
)
from lesionlab.evaluation.metrics import MetricWarning, balanced_accuracy, one_vs_rest_auc

#: The figures of one population, in table order.
FIGURES = ("balanced_accuracy", "auc_macro", "mel_auc", "priority1_sensitivity", "priority1_specificity")


def population_figures(y: np.ndarray, probs: np.ndarray, lesions: Sequence[object], class_names: Sequence[str], *,
                       thresholds: Mapping[str, float] | None = None, replicates: int = DEFAULT_REPLICATES,
                       seed: int = 0) -> dict:
    """n, lesions and :data:`FIGURES` (each with a ``<name>_ci95``; 0 replicates: no intervals)."""
    y, probs = np.asarray(y), np.asarray(probs, dtype=np.float64)
    lesion_ids = np.asarray(lesions).astype(str)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MetricWarning)
        aucs = one_vs_rest_auc(y, probs, class_names)
    truth, flag = priority1(y, probs, class_names, thresholds)
    out: dict = {"n": len(y), "lesions": len(np.unique(lesion_ids)),
                 "balanced_accuracy": balanced_accuracy(y, probs.argmax(1), len(class_names)),
                 "auc_macro": float(np.nanmean(aucs)) if np.isfinite(aucs).any() else float("nan"),
                 "mel_auc": float("nan"),
                 "priority1_sensitivity": float(flag[truth].mean()) if truth.any() else float("nan"),
                 "priority1_specificity": float((~flag[~truth]).mean()) if (~truth).any() else float("nan")}
    mel = list(class_names).index("mel") if "mel" in class_names else None
    if mel is not None:
        out["mel_auc"] = binary_auc(y == mel, probs[:, mel])
    if replicates > 0 and len(y):
        cis = bootstrap_cis(y, probs, lesion_ids, class_names, thresholds=thresholds, replicates=replicates, seed=seed)
        for key in ("balanced_accuracy", "auc_macro", "priority1_sensitivity", "priority1_specificity"):
            out[f"{key}_ci95"] = cis.get(key)
        if mel is not None and np.isfinite(out["mel_auc"]):
            out["mel_auc_ci95"] = list(bootstrap_ci(lambda r: binary_auc(y[r] == mel, probs[r, mel]), lesion_ids,
                                                    n_boot=replicates, seed=seed))
    return out


def figures_by_source(table: pd.DataFrame, y: np.ndarray, probs: np.ndarray, class_names: Sequence[str], *,
                      thresholds: Mapping[str, float] | None = None,
                      replicates: int = DEFAULT_REPLICATES) -> dict | None:
    """``{source: figures, ..., "worst": {figure: min over sources}}`` when ``table`` has several sources, else
    None. ``worst`` takes each figure's minimum over the sources where it is defined."""
    if "source" not in table or table["source"].nunique() < 2:
        return None
    sources = table["source"].astype(str).to_numpy()
    lesions = (table["lesion_id"] if "lesion_id" in table else table["image_id"]).astype(str).to_numpy()
    out: dict = {}
    for name in pd.unique(sources):
        rows = sources == name
        out[str(name)] = population_figures(np.asarray(y)[rows], np.asarray(probs)[rows], lesions[rows],
                                            class_names, thresholds=thresholds, replicates=replicates)
    worst = {}
    for key in FIGURES:
        values = np.array([out[s][key] for s in out], dtype=np.float64)
        worst[key] = float(np.nanmin(values)) if np.isfinite(values).any() else float("nan")
    out["worst"] = worst
    return out
