"""Report sections of a cross-validation: the single-fold vs ensemble table, per-fold metrics, fold curves."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from lesionlab.reports.diagnostic_plots import plot_overlaid_curves
from lesionlab.reports.html import image_html, table_html

LABELS = {"balanced_accuracy": "balanced accuracy", "auc_macro": "macro AUC", "accuracy": "accuracy",
          "top2_accuracy": "top-2", "top3_accuracy": "top-3", "ece_before": "ECE before T",
          "ece_after": "ECE after T", "ece_equal_mass_after": "ECE equal-mass after T",
          "brier_before": "Brier before T", "brier_after": "Brier after T"}


CI_COLUMNS = ("balanced_accuracy_ci_low", "balanced_accuracy_ci_high")
#: Row names as shown: every row says whether its figures use test-time augmentation.
ROW_LABELS = {"single fold": "single fold, no TTA", "ensemble": "ensemble, no TTA"}


def summary_display(summary: pd.DataFrame) -> pd.DataFrame:
    """Single-fold rows as 'mean ± std' strings, ensemble rows as numbers formatted alike, with the lesion-level
    bootstrap 95 % CI of the ensembles' balanced accuracy; rows without test-time augmentation say so."""
    ci = summary[[c for c in CI_COLUMNS if c in summary]]
    summary = summary.drop(columns=list(ci.columns))
    rows = {}
    for name in summary.index:
        if name.endswith(": std"):
            continue
        if name.endswith(": mean"):
            base = name[: -len(": mean")]
            std = summary.loc[f"{base}: std"]
            key = f"{ROW_LABELS.get(base, base)} (mean ± std)"
            rows[key] = {c: f"{summary.loc[name, c]:.4f} ± {std[c]:.4f}" for c in summary.columns}
        else:
            key = ROW_LABELS.get(name, name)
            rows[key] = {c: f"{summary.loc[name, c]:.4f}" for c in summary.columns}
        if len(ci.columns) == 2:
            low, high = ci.loc[name]
            rows[key]["balanced accuracy 95% CI"] = "–" if pd.isna(low) else f"{low:.4f} – {high:.4f}"
    frame = pd.DataFrame(rows).T.rename(columns=LABELS)
    frame.index.name = "model (held-out test split)"
    return frame


def cv_sections(root: Path, summary: pd.DataFrame, folds: pd.DataFrame, members: Sequence) -> list[tuple[str, str]]:
    """(heading, html) sections for the cross-validation report."""
    histories = {f"fold {k}": pd.read_csv(m.run.history) for k, m in enumerate(members) if m.run.history.is_file()}
    body = (table_html(summary_display(summary)) +
            "<p class='muted'>Every row is scored on the same held-out lesion-disjoint test split, which no fold "
            "trained or validated on. 'After T' applies each member's temperature, fitted on its own validation "
            "fold. The ensemble averages the members' probabilities.</p>")
    sections = [("Cross-validation: single fold vs ensemble", body)]
    per_fold = folds.rename(columns=LABELS).set_index(["fold", "tta"])
    per_fold.index = [f"fold {f}, TTA {t}" for f, t in per_fold.index]
    per_fold.index.name = "member"
    sections.append(("Per-fold test metrics", table_html(per_fold) +
                     "<p class='muted'>Each fold's own report is in its fold-k/ folder.</p>"))
    if histories:
        fig = plot_overlaid_curves(histories, root / "figures" / "fold_learning_curves.png")
        sections.append(("Fold learning curves", image_html(fig, "fold learning curves")))
    return sections
