"""Write an evaluation's artefacts: metrics.json, predictions.csv, figures and the per-class table."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from lesionlab.data.taxonomy import triage_priority
from lesionlab.evaluation.diagnostic_plots import plot_pr
from lesionlab.evaluation.metrics import classification_metrics
from lesionlab.evaluation.plots import plot_confusion, plot_roc


def _json_safe(obj: object) -> object:
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, float) and math.isnan(obj):
        return None
    return obj


def predictions_frame(table: pd.DataFrame, y_true: np.ndarray, probs: np.ndarray,
                      class_names: Sequence[str]) -> pd.DataFrame:
    """One row per image: id, truth, prediction, its triage priority, one probability column per class."""
    pred = probs.argmax(axis=1)
    frame = pd.DataFrame({
        "image_id": table["image_id"].to_numpy(),
        "truth": [class_names[i] for i in y_true],
        "prediction": [class_names[i] for i in pred],
        "triage_priority": [triage_priority(class_names[i]) for i in pred],
    })
    for c, name in enumerate(class_names):
        frame[f"p_{name}"] = probs[:, c]
    return frame


def per_class_table(metrics: dict) -> pd.DataFrame:
    frame = pd.DataFrame(metrics["per_class"]).T[["precision", "recall", "specificity", "f1", "auc", "support"]]
    for avg in ("macro", "weighted", "micro"):
        row = dict(metrics[avg])
        row.update({"auc": metrics["auc_macro"] if avg == "macro" else float("nan"), "support": metrics["n"]})
        frame.loc[f"{avg} avg"] = row
    frame.index.name = "class"
    frame["support"] = frame["support"].astype(int)
    return frame


def write_evaluation(out_dir: Path, table: pd.DataFrame, y_true: np.ndarray, probs: np.ndarray,
                     class_names: Sequence[str], topk: Sequence[int] = (2, 3), prefix: str = "") -> dict:
    """Compute metrics and write ``metrics.json``, ``predictions.csv`` and the confusion/ROC/PR figures."""
    out_dir = Path(out_dir)
    (out_dir / "figures").mkdir(parents=True, exist_ok=True)
    metrics = classification_metrics(y_true, probs, class_names, topk)
    (out_dir / "metrics.json").write_text(json.dumps(_json_safe(metrics), indent=2))
    predictions_frame(table, y_true, probs, class_names).to_csv(out_dir / "predictions.csv", index=False)
    per_class_table(metrics).to_csv(out_dir / "per_class.csv")
    plot_confusion(np.array(metrics["confusion_matrix"]), class_names, out_dir / "figures" / f"{prefix}confusion.png")
    aucs = [metrics["per_class"][c]["auc"] for c in class_names]
    plot_roc(y_true, probs, class_names, aucs, out_dir / "figures" / f"{prefix}roc.png")
    plot_pr(y_true, probs, class_names, out_dir / "figures" / f"{prefix}pr.png")
    return metrics


def headline(metrics: dict) -> list[tuple[str, float]]:
    items = [("balanced accuracy", metrics["balanced_accuracy"]), ("macro AUC", metrics["auc_macro"]),
             ("accuracy", metrics["accuracy"]), ("macro F1", metrics["macro"]["f1"])]
    items += [(f"top-{k[3:-9]} accuracy", v) for k, v in metrics.items()
              if k.startswith("top") and k.endswith("_accuracy")]
    items.append(("test images", metrics["n"]))
    return items
