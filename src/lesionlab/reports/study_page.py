"""A study's results page: the paper's claims beside ours (mean ± sd over seeds, 95 % CI), a figure, the discussion.

The discussion is hand-written after the numbers are in (``<results>/<study>-notes.md``) and kept beside the
generated table; the page says plainly when an arm has not run yet.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from lesionlab.config.study import StudyConfig
from lesionlab.reports.plots import save_figure
from lesionlab.reports.results_table import markdown_table

LABELS = {"balanced_accuracy": "bal. acc.", "auc_macro": "macro AUC", "accuracy": "accuracy",
          "top2_accuracy": "top-2", "gap_bal_acc": "gap train − val (bal. acc.)"}


def metric_label(metric: str) -> str:
    return LABELS.get(metric, metric.replace("per_class.", "").replace(".", " "))


def _cell(values: pd.Series) -> str:
    values = values.dropna().astype(float)
    if values.empty:
        return "–"
    if len(values) == 1:
        return f"{values.iloc[0]:.3f}"
    return f"{values.mean():.3f} ± {values.std(ddof=1):.3f}"


def median_seed_ci(group: pd.DataFrame, metric: str) -> str:
    """The 95 % lesion-bootstrap interval of the seed whose value is the median (the run a reader would pick)."""
    if f"{metric}_lo" not in group or group[metric].dropna().empty:
        return ""
    ordered = group.dropna(subset=[metric]).sort_values(metric)
    row = ordered.iloc[(len(ordered) - 1) // 2]
    lo, hi = row.get(f"{metric}_lo"), row.get(f"{metric}_hi")
    if lo is None or hi is None or (isinstance(lo, float) and math.isnan(lo)):
        return ""
    return f" ({lo:.3f}–{hi:.3f})"


def summary_table(study: StudyConfig, results: pd.DataFrame) -> pd.DataFrame:
    """One row per label: paper values, ours (mean ± sd, median seed's CI), seeds, gap, minutes."""
    rows = []
    labelled = results.dropna(subset=[m for m in study.metrics if m in results], how="all")
    for label, group in labelled.groupby("label", sort=False):
        claims = study.claims.get(str(label), {})
        row = {"arm": label, "seeds": int(group["seed"].nunique())}
        for metric in study.metrics:
            if metric not in group:
                continue
            paper = claims.get(metric)
            row[f"{metric_label(metric)} (paper)"] = f"{paper:.3f}" if paper is not None else ""
            row[f"{metric_label(metric)} (ours)"] = _cell(group[metric]) + median_seed_ci(group, metric)
        if "gap_bal_acc" in group and group["gap_bal_acc"].notna().any():
            row["gap train − val"] = _cell(group["gap_bal_acc"])
        row["min / run"] = f"{group['minutes'].astype(float).mean():.1f}"
        rows.append(row)
    return pd.DataFrame(rows)


def plot_study(study: StudyConfig, results: pd.DataFrame, path: Path, metric: str = "balanced_accuracy") -> Path | None:
    """Ours (mean ± sd over seeds) per arm as bars, the paper's claim as a marker."""
    data = results.dropna(subset=[metric]) if metric in results else pd.DataFrame()
    if data.empty:
        return None
    stats = data.groupby("label", sort=False)[metric].agg(["mean", "std"]).fillna(0.0)
    fig = Figure(figsize=(max(4.0, 1.1 * len(stats) + 1.5), 3.2))
    ax = fig.subplots()
    x = range(len(stats))
    ax.bar(x, stats["mean"], yerr=stats["std"], color="#4c72b0", capsize=3, label="LesionLab (mean ± sd)")
    claims = [study.claims.get(str(label), {}).get(metric) for label in stats.index]
    if any(c is not None for c in claims):
        ax.scatter([i for i, c in zip(x, claims, strict=True) if c is not None], [c for c in claims if c is not None],
                   marker="D", color="#dd8452", zorder=3, label="paper")
    ax.set_xticks(list(x), [str(s) for s in stats.index], rotation=25, ha="right", fontsize=8)
    ax.set_ylabel(metric_label(metric))
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title(study.title, fontsize=9)
    return save_figure(fig, path, dpi=120)


def write_study_page(study: StudyConfig, results: pd.DataFrame, path: Path, *, scale: str, command: str) -> Path:
    """``<results>/<study>.md``: question, paper, setting, the table, the figure, the discussion, what is missing."""
    figure = plot_study(study, results, path.with_suffix(".png"))
    arms = [a for a in study.arms if not a.only_at or scale in a.only_at]
    expected = {(a.name, s) for a in arms for s in (a.seeds or study.seeds)}
    ran = set(zip(results["arm"], results["seed"].astype(int), strict=True)) if len(results) else set()
    missing = sorted(expected - ran)
    machines = sorted(set(results["machine"].dropna())) if "machine" in results else []
    total = results.drop_duplicates(["arm", "seed"])["minutes"].astype(float).sum() if len(results) else 0.0
    lines = [f"# {study.title}", "", f"**Question.** {study.question}", "", f"**Paper.** {study.paper}", "",
             f"**Setting ({scale}).** {study.setting.get(scale, 'see the study file')}", "",
             f"**Command.** `{command}` (study file `configs/studies/{study.name}.yaml`; resumable, results in "
             f"`{path.with_suffix('.csv').name}`).", "",
             f"**Machine and wall time.** {', '.join(machines) or 'not run yet'}; {total:.0f} minutes in all "
             f"({len(ran)} arm × seed runs).", ""]
    table = summary_table(study, results) if len(results) else pd.DataFrame()
    if len(table):
        lines += ["Ours: mean ± sd over seeds, in brackets the 95 % lesion-bootstrap interval of the median seed's "
                  "test set (1,000 replicates). Paper: as reported, on its own split.", "",
                  markdown_table(table.set_index("arm")), ""]
    if figure is not None:
        lines += [f"![{study.title}]({figure.name})", ""]
    notes = path.with_name(f"{path.stem}-notes.md")
    lines += [notes.read_text().strip() if notes.is_file() else "_Discussion: written once every arm has run._", ""]
    if missing:
        lines += ["Not run yet: " + ", ".join(f"{a} (seed {s})" for a, s in missing) + ".", ""]
    path.write_text("\n".join(lines))
    return path
