"""Write an evaluation's artifacts: metrics.json, predictions.csv, figures and the per-class table."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from lesionlab.data.taxonomy import triage_priority
from lesionlab.evaluation.bootstrap import DEFAULT_REPLICATES, bootstrap_cis, priority1, subgroup_table
from lesionlab.evaluation.metrics import classification_metrics
from lesionlab.evaluation.populations import figures_by_source
from lesionlab.reports.diagnostic_plots import plot_pr
from lesionlab.reports.plots import plot_confusion, plot_roc


def json_safe(obj: object) -> object:
    """``obj`` as plain JSON: numpy scalars and arrays as Python numbers and lists, NaN as null (the one helper every
    artifact writer uses)."""
    if isinstance(obj, np.ndarray):
        obj = obj.tolist()
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
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
                     class_names: Sequence[str], topk: Sequence[int] = (2, 3), prefix: str = "", *,
                     thresholds: Mapping[str, float] | None = None, sensitivity_target: float | None = None,
                     replicates: int = DEFAULT_REPLICATES) -> dict:
    """Compute metrics and write ``metrics.json``, ``predictions.csv``, the confusion/ROC/PR figures and, where the
    table has age/sex/site, ``subgroups.csv``.

    ``metrics["ci95"]`` holds lesion-level bootstrap 95 % intervals (``replicates``; 0 for none) and
    ``metrics["triage_operating_point"]`` the priority-1 sensitivity/specificity of the most-severe-suspected rule
    under ``thresholds`` (chosen on validation for ``sensitivity_target``).
    """
    out_dir = Path(out_dir)
    (out_dir / "figures").mkdir(parents=True, exist_ok=True)
    metrics = classification_metrics(y_true, probs, class_names, topk)
    lesions = (table["lesion_id"] if "lesion_id" in table else table["image_id"]).astype(str).to_numpy()
    truth_p1, flag_p1 = priority1(y_true, probs, class_names, thresholds)
    op = {"rule": "most severe suspected" if thresholds else "top-1", "thresholds": dict(thresholds or {}),
          "sensitivity_target": sensitivity_target, "chosen_on": "validation" if thresholds else None,
          "sensitivity": float(flag_p1[truth_p1].mean()) if truth_p1.any() else float("nan"),
          "specificity": float((~flag_p1[~truth_p1]).mean()) if (~truth_p1).any() else float("nan"),
          "priority1_images": int(truth_p1.sum())}
    if replicates > 0:
        metrics["ci95"] = bootstrap_cis(y_true, probs, lesions, class_names, thresholds=thresholds,
                                        replicates=replicates)
        op["sensitivity_ci95"] = metrics["ci95"]["priority1_sensitivity"]
        op["specificity_ci95"] = metrics["ci95"]["priority1_specificity"]
        subgroups = subgroup_table(table, y_true, probs, class_names, thresholds=thresholds, replicates=replicates)
        if len(subgroups):
            subgroups.to_csv(out_dir / "subgroups.csv", index=False)
    op["statement"] = operating_point_statement(op)
    metrics["triage_operating_point"] = op
    by_source = figures_by_source(table, y_true, probs, class_names, thresholds=thresholds, replicates=replicates)
    if by_source is not None:  # several populations: each one's figures and the worst of them
        metrics["by_source"] = by_source
    (out_dir / "metrics.json").write_text(json.dumps(json_safe(metrics), indent=2))
    predictions_frame(table, y_true, probs, class_names).to_csv(out_dir / "predictions.csv", index=False)
    per_class_table(metrics).to_csv(out_dir / "per_class.csv")
    plot_confusion(np.array(metrics["confusion_matrix"]), class_names, out_dir / "figures" / f"{prefix}confusion.png")
    aucs = [metrics["per_class"][c]["auc"] for c in class_names]
    plot_roc(y_true, probs, class_names, aucs, out_dir / "figures" / f"{prefix}roc.png")
    plot_pr(y_true, probs, class_names, out_dir / "figures" / f"{prefix}pr.png")
    return metrics


def operating_point_statement(op: Mapping) -> str:
    """'priority-1 sensitivity ≥ 0.9 chosen on validation; test sensitivity 0.91 (95 % CI ...), specificity ...'."""
    def ci(key: str) -> str:
        v = op.get(key)
        return f" (95% CI {v[0]:.3f}–{v[1]:.3f})" if v else ""

    target = op.get("sensitivity_target")
    if not op.get("thresholds"):
        head = "top-1 rule (no operating thresholds chosen on validation)"
    elif target is not None:
        head = f"priority-1 sensitivity ≥ {target:g} chosen on validation"
    else:
        head = "priority-1 thresholds chosen on validation"
    return (f"{head}; test sensitivity {op['sensitivity']:.3f}{ci('sensitivity_ci95')}, specificity "
            f"{op['specificity']:.3f}{ci('specificity_ci95')} ({op.get('priority1_images')} priority-1 test images)")


def headline(metrics: dict) -> list[tuple[str, float]]:
    items = [("balanced accuracy", metrics["balanced_accuracy"]), ("macro AUC", metrics["auc_macro"]),
             ("accuracy", metrics["accuracy"]), ("macro F1", metrics["macro"]["f1"])]
    items += [(f"top-{k[3:-9]} accuracy", v) for k, v in metrics.items()
              if k.startswith("top") and k.endswith("_accuracy")]
    items.append(("test images", metrics["n"]))
    return items
