"""Figures of the evaluation-depth sections: PR curves, reliability diagrams, overlaid learning curves, the
Grad-CAM gallery and the robustness curves. Each function writes a PNG and returns its path."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, precision_recall_curve

from lesionlab.inference.calibration import reliability_bins
from lesionlab.reports.plots import save_figure


def plot_pr(y_true: np.ndarray, probs: np.ndarray, class_names: Sequence[str], path: Path) -> Path:
    """One-vs-rest precision-recall curves with average precision (the prevalence is the chance level)."""
    fig, ax = plt.subplots(figsize=(6, 5.5))
    for c, name in enumerate(class_names):
        pos = np.asarray(y_true) == c
        if pos.any() and not pos.all():
            precision, recall, _ = precision_recall_curve(pos, probs[:, c])
            ap = average_precision_score(pos, probs[:, c])
            ax.plot(recall, precision, label=f"{name} (AP {ap:.3f}, prevalence {pos.mean():.3f})")
    ax.set_xlabel("recall (sensitivity)")
    ax.set_ylabel("precision (positive predictive value)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_title("One-vs-rest precision-recall curves")
    ax.legend(fontsize=7, loc="lower left")
    return save_figure(fig, path)


def plot_reliability(y_true: np.ndarray, curves: Mapping[str, np.ndarray], path: Path, n_bins: int = 15) -> Path:
    """Reliability diagram (equal-width and equal-mass bins) for each named set of probabilities."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6))
    for ax, strategy, title in ((axes[0], "uniform", "equal-width bins"), (axes[1], "quantile", "equal-mass bins")):
        ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="perfect calibration")
        for label, probs in curves.items():
            r = reliability_bins(y_true, probs, n_bins, strategy)
            ax.plot(r["confidence"], r["accuracy"], "o-", ms=3, label=label)
        ax.set_xlabel("confidence (top-1 probability)")
        ax.set_ylabel("accuracy")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_title(f"Reliability diagram ({title})")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")
    return save_figure(fig, path)


def plot_overlaid_curves(histories: Mapping[str, pd.DataFrame], path: Path) -> Path:
    """Validation loss and balanced accuracy per epoch of several runs (train dashed)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for i, (name, h) in enumerate(histories.items()):
        color = f"C{i % 10}"
        for ax, key in ((axes[0], "loss"), (axes[1], "bal_acc")):
            if f"val_{key}" in h:
                ax.plot(h["epoch"], h[f"val_{key}"], color=color, label=f"{name} (val)")
            if f"train_{key}" in h:
                ax.plot(h["epoch"], h[f"train_{key}"], color=color, ls="--", alpha=0.6, label=f"{name} (train)")
    axes[0].set_title("loss")
    axes[1].set_title("balanced accuracy")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return save_figure(fig, path)


def plot_gallery(images: np.ndarray, overlays: np.ndarray, masks: np.ndarray | None, captions: Sequence[str],
                 rows: Sequence[Sequence[int]], row_labels: Sequence[str], path: Path) -> Path:
    """A grid: one row per class, each cell an image and its heat-map overlay (lesion outline in white)."""
    ncols = max(1, max((len(r) for r in rows), default=1))
    fig, axes = plt.subplots(len(rows), 2 * ncols, figsize=(2.1 * 2 * ncols, 2.4 * len(rows)), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for r, (picks, label) in enumerate(zip(rows, row_labels, strict=True)):
        axes[r, 0].text(-0.1, 0.5, label, transform=axes[r, 0].transAxes, rotation=90, va="center", ha="right",
                        fontsize=9, fontweight="bold")
        for j, i in enumerate(picks):
            axes[r, 2 * j].imshow(images[i])
            axes[r, 2 * j + 1].imshow(overlays[i])
            if masks is not None and masks[i].any():
                axes[r, 2 * j + 1].contour(masks[i], levels=[0.5], colors="white", linewidths=0.8)
            axes[r, 2 * j].set_title(captions[i], fontsize=7, loc="left")
    return save_figure(fig, path)


def plot_robustness(table: pd.DataFrame, clean_error: float, path: Path) -> Path:
    """Balanced error against severity, one line per corruption; the clean error dashed."""
    fig, ax = plt.subplots(figsize=(9, 5))
    severities = [c for c in table.columns if str(c).isdigit()]
    for i, (name, row) in enumerate(table.iterrows()):
        ax.plot([int(s) for s in severities], row[severities].to_numpy(dtype=float), marker="o", ms=3,
                color=plt.cm.tab20(i % 20), label=name)
    ax.axhline(clean_error, color="k", ls="--", lw=1, label="clean")
    ax.set_xlabel("severity")
    ax.set_ylabel("balanced error (1 − balanced accuracy)")
    ax.set_xticks([int(s) for s in severities])
    ax.set_title("Robustness to image corruptions")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2, loc="upper left", bbox_to_anchor=(1.01, 1))
    return save_figure(fig, path)


def plot_examples(examples: Mapping[str, Sequence[np.ndarray]], path: Path) -> Path:
    """One row per corruption, one column per severity."""
    names = list(examples)
    ncols = max(len(v) for v in examples.values())
    fig, axes = plt.subplots(len(names), ncols, figsize=(1.3 * ncols, 1.35 * len(names)), squeeze=False)
    for r, name in enumerate(names):
        for c in range(ncols):
            ax = axes[r, c]
            ax.axis("off")
            if c < len(examples[name]):
                ax.imshow(examples[name][c])
            if r == 0:
                ax.set_title("clean" if c == 0 else f"severity {c}", fontsize=7)
        axes[r, 0].text(-0.08, 0.5, name, transform=axes[r, 0].transAxes, ha="right", va="center", fontsize=7)
    return save_figure(fig, path)
