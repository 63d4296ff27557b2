"""Figures for reports: confusion matrices, ROC curves, learning curves, class counts. Each returns a path."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.metrics import roc_curve


def save_figure(fig: plt.Figure, path: str | Path, dpi: int = 110) -> Path:
    """Lay out, write (creating the folder) and close ``fig``: the one place a figure is saved."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def plot_confusion(cm: np.ndarray, class_names: Sequence[str], path: Path, title: str = "Confusion matrix") -> Path:
    """Counts (left) and row-normalised recall (right)."""
    cm = np.asarray(cm)
    with np.errstate(invalid="ignore", divide="ignore"):
        norm = cm / cm.sum(axis=1, keepdims=True)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.8))
    for ax, data, fmt, sub in ((axes[0], cm, "d", "counts"), (axes[1], norm, ".2f", "row-normalised")):
        im = ax.imshow(np.nan_to_num(data), cmap="Blues", vmin=0)
        ax.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
        ax.set_yticks(range(len(class_names)), class_names)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"{title} ({sub})")
        top = np.nanmax(data) if np.isfinite(data).any() else 1
        for i in range(data.shape[0]):
            for j in range(data.shape[1]):
                v = data[i, j]
                txt = "–" if not np.isfinite(v) else format(int(v) if fmt == "d" else v, fmt)
                ax.text(j, i, txt, ha="center", va="center", fontsize=8,
                        color="white" if np.isfinite(v) and v > top / 2 else "black")
        fig.colorbar(im, ax=ax, fraction=0.046)
    return save_figure(fig, path)


def plot_roc(y_true: np.ndarray, probs: np.ndarray, class_names: Sequence[str], aucs: Sequence[float],
             path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6, 5.5))
    for c, name in enumerate(class_names):
        pos = y_true == c
        if pos.any() and not pos.all():
            fpr, tpr, _ = roc_curve(pos, probs[:, c])
            ax.plot(fpr, tpr, label=f"{name} (AUC {aucs[c]:.3f})")
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.set_xlabel("1 - specificity (false-positive rate)")
    ax.set_ylabel("sensitivity (true-positive rate)")
    ax.set_title("One-vs-rest ROC curves")
    ax.legend(fontsize=8, loc="lower right")
    return save_figure(fig, path)


def plot_learning_curves(history: pd.DataFrame, path: Path) -> Path:
    """Loss and balanced accuracy per epoch, train vs validation."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    e = history["epoch"]
    axes[0].plot(e, history["train_loss"], label="train")
    axes[0].plot(e, history["val_loss"], label="validation")
    axes[0].set_title("loss")
    axes[1].plot(e, history["train_bal_acc"], label="train")
    axes[1].plot(e, history["val_bal_acc"], label="validation")
    if "val_auc" in history:
        axes[1].plot(e, history["val_auc"], label="validation macro AUC", ls="--")
    axes[1].set_title("balanced accuracy")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    return save_figure(fig, path)


def plot_split_counts(counts: pd.DataFrame, path: Path) -> Path:
    """Images per class per split (log scale: the imbalance is the point)."""
    data = counts.drop(index="total", errors="ignore")
    fig, ax = plt.subplots(figsize=(8, 4))
    data.plot.bar(ax=ax, logy=True)
    ax.set_ylabel("images (log scale)")
    ax.set_title("Images per class and split")
    return save_figure(fig, path)
