"""``lesionlab compare RUN...``: several runs (or cross-validation ensembles) side by side — a metrics table,
overlaid learning curves and each run's training-dynamics summary, in one self-contained report."""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from lesionlab.config import read_run_config
from lesionlab.errors import EvaluationInputError
from lesionlab.reports.diagnostic_plots import plot_overlaid_curves
from lesionlab.reports.dynamics import dynamics_table, overfitting_gap
from lesionlab.reports.html import Report, image_html, table_html

METRICS = (("balanced_accuracy", "balanced accuracy"), ("auc_macro", "macro AUC"), ("accuracy", "accuracy"),
           ("top2_accuracy", "top-2"), ("top3_accuracy", "top-3"))


@dataclass(frozen=True)
class Comparison:
    directory: Path
    table: pd.DataFrame


def _run_row(root: Path) -> dict:
    metrics_path = root / "metrics.json"
    if not metrics_path.is_file():
        raise EvaluationInputError(f"{root} has no metrics.json: is it a finished LesionLab run or cv folder?")
    m = json.loads(metrics_path.read_text())
    row: dict = {"run": root.name}
    cfg_path = root / "config.yaml"
    if cfg_path.is_file():
        cfg = read_run_config(cfg_path)
        train = cfg.get("train", {})
        row.update({"backbone": cfg.get("model", {}).get("backbone"), "px": cfg.get("data", {}).get("image_size"),
                    "epochs": train.get("epochs"), "loss": train.get("loss", {}).get("name")})
    row.update({label: m.get(key) for key, label in METRICS})
    ci = (m.get("ci95") or {}).get("balanced_accuracy")  # lesion-level bootstrap 95 % CI (runs since issue 13)
    row["bal. acc. 95% CI"] = f"{ci[0]:.3f} – {ci[1]:.3f}" if ci else "–"
    op = m.get("triage_operating_point") or {}
    sens = op.get("sensitivity_ci95")
    row["priority-1 sens. (95% CI)"] = (f"{op['sensitivity']:.3f} ({sens[0]:.3f} – {sens[1]:.3f})"
                                        if sens and op.get("sensitivity") is not None else "–")
    row["macro F1"] = m.get("macro", {}).get("f1")
    cal = root / "calibration.json"
    if cal.is_file():
        c = json.loads(cal.read_text())
        row["ECE"] = (c.get("after") or {}).get("ece")
    timings = root / "timings.json"
    if timings.is_file():
        row["seconds"] = json.loads(timings.read_text()).get("total")
    row["test images"] = m.get("n")
    return row


def compare_runs(runs: Sequence[str | Path], out_dir: str | Path | None = None, *,
                 output_dir: str | Path | None = None) -> Comparison:
    """Write ``compare.csv``, ``figures/learning_curves.png`` and ``report.html`` for ``runs``.

    Into ``out_dir``, else ``<output_dir>/compare-<time>``; ``output_dir`` defaults to the folder that holds the first
    run (the output directory it was trained into), never the current directory.
    """
    roots = [Path(r) for r in runs]
    if len(roots) < 1:
        raise EvaluationInputError("compare needs at least one run directory")
    for r in roots:
        if not r.is_dir():
            raise FileNotFoundError(f"run directory not found: {r}")
    names = [r.name for r in roots]
    if len(set(names)) != len(names):
        names = [str(r) for r in roots]
    table = pd.DataFrame([_run_row(r) for r in roots])
    table["run"] = names
    table = table.set_index("run")
    parent = Path(output_dir) if output_dir else roots[0].resolve().parent
    directory = Path(out_dir) if out_dir else parent / f"compare-{_dt.datetime.now():%Y%m%d-%H%M%S}"
    (directory / "figures").mkdir(parents=True, exist_ok=True)
    table.to_csv(directory / "compare.csv")
    report = Report("LesionLab comparison", f"{len(roots)} runs · generated {_dt.datetime.now():%Y-%m-%d %H:%M}")
    report.add("Test metrics", table_html(table) + "<p class='muted'>Each run on its own held-out test split; runs "
               "are comparable only when they share the data, split seed and fractions.</p>")
    histories = {n: pd.read_csv(r / "history.csv") for n, r in zip(names, roots, strict=True)
                 if (r / "history.csv").is_file()}
    if histories:
        fig = plot_overlaid_curves(histories, directory / "figures" / "learning_curves.png")
        report.add("Learning curves", image_html(fig, "overlaid learning curves"))
        gaps = pd.DataFrame({n: overfitting_gap(h) for n, h in histories.items()}).T
        gaps.index.name = "run"
        report.add("Overfitting gap at the last epoch (train − validation)", table_html(gaps))
        for n, h in histories.items():
            report.add(f"Training dynamics: {n}", table_html(dynamics_table(h)))
    report.write(directory / "report.html")
    return Comparison(directory, table)
