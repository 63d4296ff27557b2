"""Comparison tables and curves for sweeps and ablations: one row per run, best value per column marked."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.ticker import MaxNLocator

from lesionlab.reports.plots import save_figure

BEST_MARK = "★"


def run_row(metrics: Mapping, class_names: Sequence[str]) -> dict[str, float]:
    """The ablation/sweep metrics of one run's test evaluation (``classification_metrics`` output)."""
    row = {"accuracy": metrics["accuracy"], "balanced_accuracy": metrics["balanced_accuracy"],
           "macro_precision": metrics["macro"]["precision"], "macro_recall": metrics["macro"]["recall"],
           "macro_f1": metrics["macro"]["f1"], "auc_macro": metrics["auc_macro"]}
    for name in class_names:
        row[f"recall_{name}"] = metrics["per_class"][name]["recall"]
    return {k: (float("nan") if v is None else float(v)) for k, v in row.items()}


def best_rows(frame: pd.DataFrame, columns: Sequence[str], lower_is_better: Sequence[str] = ()) -> dict[str, list]:
    """Index labels holding the best value of each column, compared as shown (4 decimals): ties all count, NaN never
    wins, and a column whose values are all equal (e.g. a class recall of 0.0000 everywhere) has no best."""
    out = {}
    for col in columns:
        values = pd.to_numeric(frame[col], errors="coerce").round(4)
        if values.nunique(dropna=True) > 1:
            best = values.min() if col in lower_is_better else values.max()
            out[col] = list(frame.index[values == best])
    return out


def _cell(v: object) -> str:
    if isinstance(v, float):
        return "–" if math.isnan(v) else f"{v:.4f}"
    return str(v)


def marked_frame(frame: pd.DataFrame, columns: Sequence[str], lower_is_better: Sequence[str] = ()) -> pd.DataFrame:
    """``frame`` as strings with the best value per column suffixed by ★."""
    marks = best_rows(frame, columns, lower_is_better)
    out = frame.map(_cell)
    for col, labels in marks.items():
        for label in labels:
            out.loc[label, col] = f"{out.loc[label, col]} {BEST_MARK}"
    return out


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub-flavoured markdown table of a (string) frame, index first."""
    head = [frame.index.name or "", *map(str, frame.columns)]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * len(frame.columns)) + "|"]
    for idx, row in frame.iterrows():
        lines.append("| " + " | ".join([str(idx), *map(str, row.tolist())]) + " |")
    return "\n".join(lines) + "\n"


def plot_validation_curves(histories: Mapping[str, pd.DataFrame], path: Path, title: str) -> Path:
    """Validation balanced accuracy and loss per epoch, one line per run."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for label, h in histories.items():
        axes[0].plot(h["epoch"], h["val_bal_acc"], marker="o", ms=3, label=label)
        axes[1].plot(h["epoch"], h["val_loss"], marker="o", ms=3, label=label)
    axes[0].set_title("validation balanced accuracy")
    axes[1].set_title("validation loss")
    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(title)
    return save_figure(fig, path)
