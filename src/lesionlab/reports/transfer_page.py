"""The transfer report's page: one model on several sets in one self-contained HTML file (the job is
:mod:`lesionlab.engine.transfer_report`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from lesionlab.models.checkpoint import Preprocessing
from lesionlab.reports.html import Report, image_html, table_html
from lesionlab.reports.plots import save_figure

SHIFT_COLUMNS = ("images", "scored", "outside taxonomy", "seen, excluded", "balanced accuracy", "macro AUC", "ECE",
                 "OOD-flag rate")
OPERATING_COLUMNS = ("melanomas", "melanoma AUC [95% CI]", "P1 sensitivity [95% CI]", "P1 specificity [95% CI]")



def ood_column_note(scores: Sequence[Any]) -> str:
    if any(s.summary["ood_flag_rate"] is not None for s in scores):
        return "OOD-flag rate: share of images the model's OOD detector (or input-quality gate) flags."
    return "OOD-flag rate: n/a — this model carries no OOD detector."


def plot_operating_points(scores: Sequence[Any], path: Path) -> Path:
    """Melanoma AUC and priority-1 sensitivity / specificity per set, with their 95 % lesion-bootstrap intervals."""
    keys = (("melanoma_auc", "melanoma AUC"), ("p1_sensitivity", "P1 sensitivity"),
            ("p1_specificity", "P1 specificity"))
    fig, ax = plt.subplots(figsize=(8, 0.9 + 0.75 * len(scores)))
    for k, (key, label) in enumerate(keys):
        for j, s in enumerate(scores):
            v = s.summary.get(key, np.nan)
            lo, hi = s.summary.get(f"{key}_ci", (np.nan, np.nan))
            if not np.isfinite(v):
                continue
            y = j + (k - 1) * 0.22
            err = [[v - lo], [hi - v]] if np.isfinite(lo) else None
            ax.errorbar(v, y, xerr=err, fmt="o", color=f"C{k}", capsize=3, label=label if j == 0 else None)
    ax.set_yticks(range(len(scores)), [s.name for s in scores])
    ax.invert_yaxis()
    ax.set_xlim(0, 1.02)
    ax.axvline(0.5, color="#bbb", lw=0.8, ls="--")
    ax.set_xlabel("value (95 % CI, lesions resampled)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.5 / (0.9 + 0.75 * len(scores)) - 0.12), ncol=3,
              fontsize=8, frameon=False)
    return save_figure(fig, path)


def write_transfer_page(directory: Path, run_name: str, prep: Preprocessing, scores: Sequence[Any],
                        table: pd.DataFrame, outside: pd.DataFrame, n_boot: int) -> Path:
    """``report.html``: the shift table, the operating-point figure, diagnoses outside the model's classes and
    per-class recall per set (``scores``: the per-set scores of :mod:`lesionlab.engine.transfer`)."""
    thresholds = ", ".join(f"P({k}) ≥ {v:.3f}" for k, v in prep.thresholds.items()) or "none stored (top-1 rule)"
    report = Report(f"LesionLab transfer report: {run_name}",
                    f"{len(scores)} sets · {prep.taxonomy} model · {prep.crop} {prep.image_size}px · TTA {prep.tta}")
    report.add("Shift table", table_html(table[list(SHIFT_COLUMNS)]) + (
        "<p class='muted'>Balanced accuracy, macro AUC (one vs rest, classes present) and ECE (15 bins) over the "
        "images whose diagnosis has a class in the model's taxonomy ('scored'). "
        f"{ood_column_note(scores)} 'test' is the run's own held-out test split.</p>"))
    report.add("Melanoma AUC and triage operating point", table_html(table[list(OPERATING_COLUMNS)]) + image_html(
        plot_operating_points(scores, directory / "figures" / "operating_points.png"), "operating points per set") +
        "<p class='muted'>Melanoma AUC uses every image whose melanoma status is known, P(melanoma) as the score "
        "(P(priority 1) for a triage model). P1 = priority 1 (malignant: refer) as decided by the model's stored "
        f"triage operating point ({thresholds}; otherwise the top-1 diagnosis). Intervals: 95 % percentile "
        f"bootstrap, {n_boot} resamples of lesions.</p>")
    body = ("<p>None: every scored image has a class in the model's taxonomy.</p>" if outside.empty
            else table_html(outside, index=False) + "<p class='muted'>These images are not in the accuracy/AUC "
            "columns (the model cannot be right or wrong about a class it lacks); they count in melanoma AUC and P1 "
            "rates where their melanoma / priority status is known.</p>")
    report.add("Diagnoses outside the model's classes", body)
    recalls = {}
    for s in scores:
        inside = s.frame[s.frame["truth"].notna()]
        recalls[s.name] = (inside["prediction"] == inside["truth"]).groupby(inside["truth"]).mean()
    per_class = pd.DataFrame(recalls).reindex(list(prep.class_names))
    per_class.index.name = "class recall"
    report.add("Per-class recall per set", table_html(per_class) +
               "<p class='muted'>Top-1 recall; a dash where the set has no image of the class.</p>")
    report.write(directory / "report.html")
    return directory / "report.html"
