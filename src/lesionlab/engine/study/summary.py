"""The studies table of ``docs/results/README.md``: study, question, paper's claim, our result with CI, verdict."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from lesionlab.config.study import load_study
from lesionlab.engine.study.run import results_path
from lesionlab.reports.study_page import median_seed_ci, metric_label

BEGIN, END = "<!-- studies:begin (lesionlab study --summary) -->", "<!-- studies:end -->"


def summary_row(study_file: Path, results_dir: Path) -> str:
    study = load_study(study_file)
    label, metric = study.headline.get("label", ""), study.headline.get("metric", "balanced_accuracy")
    claim = study.claims.get(study.headline.get("claim_row", label), {}).get(metric)  # the paper's row to compare
    csv = results_path(study, results_dir, "cpu")
    ours = "not run yet"
    if csv.is_file():
        rows = pd.read_csv(csv)
        rows = rows[rows["label"] == label] if label else rows.iloc[0:0]
        if len(rows) and metric in rows and rows[metric].notna().any():
            values = rows[metric].dropna()
            spread = f" ± {values.std(ddof=1):.3f}" if len(values) > 1 else ""
            ours = f"{values.mean():.3f}{spread}{median_seed_ci(rows, metric)} ({len(values)} seeds)"
    where = study.headline.get("paper", label)
    paper = f"{metric_label(metric)} {claim:.3f} ({where})" if claim is not None else "–"
    link = f"[{study.title}]({study.name}.md)"
    return f"| {link} | {study.question} | {paper} | {ours} | {study.verdict or 'pending'} |"


def write_summary(study_files: Sequence[Path], results_dir: Path) -> Path:
    """Replace the block between the markers of ``<results>/README.md`` (appended when absent)."""
    table = ["| study | question | paper's claim | ours (mean ± sd, 95 % CI) | verdict |", "|---|---|---|---|---|",
             *(summary_row(f, results_dir) for f in study_files)]
    block = "\n".join([BEGIN, *table, END])
    readme = results_dir / "README.md"
    text = readme.read_text() if readme.is_file() else "# Results\n"
    if BEGIN in text and END in text:
        text = text[:text.index(BEGIN)] + block + text[text.index(END) + len(END):]
    else:
        text = text.rstrip() + "\n\n## Studies\n\n" + block + "\n"
    readme.parent.mkdir(parents=True, exist_ok=True)
    readme.write_text(text)
    return readme
