"""The run report's "Resampling" section: real vs duplicated vs synthetic training samples per class."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from lesionlab.reports.html import Report, image_html, table_html
from lesionlab.reports.plots import save_figure
from lesionlab.training.train_set import RESAMPLING_CSV, SYNTHETIC_DIR


def plot_resampling(counts: pd.DataFrame, path: Path) -> Path:
    """Stacked bars per class: kept real images, duplicates, synthetic samples; the original count as a marker."""
    data = counts.drop(index="total", errors="ignore")
    fig, ax = plt.subplots(figsize=(8, 4))
    x = np.arange(len(data))
    bottom = np.zeros(len(data))
    for col, colour in (("kept", "#4c72b0"), ("duplicated", "#dd8452"), ("synthetic", "#55a868")):
        ax.bar(x, data[col], bottom=bottom, label=col, color=colour)
        bottom += data[col].to_numpy()
    ax.scatter(x, data["original"], marker="_", s=400, color="black", label="original", zorder=3)
    ax.set_xticks(x, data.index, rotation=45, ha="right")
    ax.set_ylabel("training samples")
    ax.set_title("Training samples per class after resampling")
    ax.legend()
    return save_figure(fig, path)


def synthetic_grid(directory: Path, path: Path, per_class: int = 8) -> Path | None:
    """A grid of the first synthetic images of each class (rows = classes), or ``None`` when there are none."""
    npy, labels = directory / "images.npy", directory / "labels.csv"
    if not npy.is_file() or not labels.is_file():
        return None
    images = np.load(npy, mmap_mode="r")
    table = pd.read_csv(labels)
    classes = list(dict.fromkeys(table["label"]))
    if not classes:
        return None
    fig, axes = plt.subplots(len(classes), per_class, figsize=(per_class * 0.9, len(classes) * 0.95), squeeze=False)
    for r, name in enumerate(classes):
        idx = table.loc[table["label"] == name, "index"].to_numpy()[:per_class]
        for c in range(per_class):
            ax = axes[r, c]
            ax.axis("off")
            if c < len(idx):
                ax.imshow(images[idx[c]])
        axes[r, 0].set_title(name, fontsize=8, loc="left")
    fig.suptitle("Synthetic (SMOTE) training images", fontsize=9)
    return save_figure(fig, path)


def add_resampling_section(report: Report, run_root: Path) -> bool:
    """Add the section when the run resampled its training split (``resampling.csv`` exists); True if added."""
    run_root = Path(run_root)
    csv = run_root / RESAMPLING_CSV
    if not csv.is_file():
        return False
    counts = pd.read_csv(csv, index_col=0)
    figures = run_root / "figures"
    figures.mkdir(exist_ok=True)
    body = ("<p>Resampling touched the <b>training split only</b>; validation and test images are untouched "
            "(checked). <i>kept</i> = real images after under-sampling, <i>duplicated</i> = repeated real images, "
            "<i>synthetic</i> = SMOTE samples (never shown to evaluation).</p>" + table_html(counts)
            + image_html(plot_resampling(counts, figures / "resampling.png"), "training samples per class"))
    grid = synthetic_grid(run_root / SYNTHETIC_DIR, figures / "synthetic_samples.png")
    if grid is not None:
        body += image_html(grid, "synthetic samples") + (
            f"<p class='muted'>All synthetic images: {SYNTHETIC_DIR}/images.npy (+ labels.csv, PNGs per class).</p>")
    report.add("Resampling", body)
    return True
