"""Assemble the HTML report of a training run or an evaluation from the artifacts in its directory."""

from __future__ import annotations

import datetime as _dt
import html
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import yaml

from lesionlab.config import to_dict
from lesionlab.data.info import DATASET_INFO
from lesionlab.reports.artifacts import headline, per_class_table
from lesionlab.reports.depth_report import add_dynamics_section, add_test_depth_sections
from lesionlab.reports.html import Report, image_html, table_html
from lesionlab.reports.plots import plot_learning_curves, plot_split_counts
from lesionlab.reports.safety_report import (
    add_ci_section,
    add_ood_section,
    add_operating_point_section,
    add_subgroup_section,
)
from lesionlab.reports.triage_section import add_priority_section
from lesionlab.runs import RunPaths

DISCLAIMER = ("LesionLab is research software for decision support. Its outputs are not a diagnosis and have not "
              "been validated for clinical use.")


def _licence_block(dataset: str) -> str:
    key = dataset.split(":")[0]
    if key not in DATASET_INFO:
        return "<p>Data supplied by the user; check its licence before sharing models trained on it.</p>"
    info = DATASET_INFO.get(key)
    return (f"<p><b>{html.escape(info.title)}</b> — licence {html.escape(info.licence)}.</p>"
            f"<p class='muted'>Cite: {html.escape(info.citation)}</p>")


def _metric_sections(report: Report, directory: Path, metrics: dict, prefix: str = "") -> None:
    add_priority_section(report, metrics)  # triage models: per-priority sensitivity comes first
    report.add_cards("Headline metrics (held-out test split)" if not prefix else "Headline metrics", headline(metrics))
    add_operating_point_section(report, metrics)
    add_ci_section(report, metrics)
    add_subgroup_section(report, directory)
    report.add("Per-class metrics", table_html(per_class_table(metrics)) +
               "<p class='muted'>Recall = sensitivity. Balanced accuracy is the mean recall over classes present "
               "in the truth (the ISIC challenge metric). AUC is one-vs-rest.</p>")
    report.add("Confusion matrix", image_html(directory / "figures" / f"{prefix}confusion.png", "confusion matrix"))
    report.add("ROC curves", image_html(directory / "figures" / f"{prefix}roc.png", "ROC curves"))
    add_test_depth_sections(report, directory, prefix)
    add_ood_section(report, directory)


def write_run_report(run: RunPaths, metrics: dict, *, cfg, split_counts: pd.DataFrame, summary: dict,
                     seconds: dict[str, float], best_epoch: int) -> Path:
    report = Report(
        title=f"LesionLab run: {cfg.name}",
        subtitle=f"{run.root.name} · {summary['dataset']} ({summary['taxonomy']}) · backbone {cfg.model.backbone} · "
                 f"{cfg.data.image_size}px {cfg.data.crop} · generated {_dt.datetime.now():%Y-%m-%d %H:%M}",
    )
    report.add("Notice", f"<p class='notice'>{DISCLAIMER}</p>")
    _metric_sections(report, run.root, metrics)
    history = pd.read_csv(run.history)
    plot_learning_curves(history, run.figures / "learning_curves.png")
    report.add("Learning curves", image_html(run.figures / "learning_curves.png", "learning curves") +
               f"<p>Best epoch (by {cfg.train.monitor}): {best_epoch} of {len(history)}.</p>")
    add_dynamics_section(report, history)
    plot_split_counts(split_counts, run.figures / "split_counts.png")
    data_html = (f"<p>{summary['images']} images of {summary['lesions']} lesions; split lesion-disjoint "
                 f"(stratified by class, grouped by lesion/patient; no lesion in two splits — checked).</p>"
                 + table_html(split_counts) + image_html(run.figures / "split_counts.png", "split counts"))
    if summary.get("skipped_images"):
        data_html += f"<p><b>{summary['skipped_images']} unreadable images were skipped</b> (skipped_images.csv).</p>"
    report.add("Data", data_html + _licence_block(summary["dataset"]))
    from lesionlab.reports.resampling_report import add_resampling_section

    add_resampling_section(report, run.root)  # real vs synthetic training samples per class, when resampled
    timing = pd.DataFrame({"seconds": seconds}).round(1)
    timing.index.name = "stage"
    report.add("Timing", table_html(timing) + f"<p class='muted'>Image cache: {html.escape(summary['cache'])} "
               f"({'built' if summary['cache_built'] else 'reused'}).</p>")
    report.add("Configuration", f"<pre>{html.escape(yaml.safe_dump(to_dict(cfg), sort_keys=False))}</pre>")
    return report.write(run.report)


def write_evaluation_report(directory: Path, metrics: dict, *, title: str, subtitle: str, dataset: str,
                            notes: str = "", extra_sections: Sequence[tuple[str, str]] = ()) -> Path:
    """The report of an evaluation (or a cross-validation): ``extra_sections`` (heading, html) follow the notice."""
    report = Report(title=title, subtitle=subtitle)
    report.add("Notice", f"<p class='notice'>{DISCLAIMER}</p>" + (f"<p>{html.escape(notes)}</p>" if notes else ""))
    for heading, body in extra_sections:
        report.add(heading, body)
    _metric_sections(report, directory, metrics, prefix="")
    report.add("Data", _licence_block(dataset))
    return report.write(directory / "report.html")


def refresh_run_report(root: str | Path) -> Path:
    """Re-render a finished run's ``report.html`` from the artifacts in its directory (after ``ood fit``,
    ``ood eval`` or ``calibrate`` added or changed some)."""
    import json

    import torch

    from lesionlab.config import load_run_config
    from lesionlab.data.splits import split_summary

    run = RunPaths(Path(root))
    cfg = load_run_config(run.config)
    metrics = json.loads(run.metrics.read_text())
    splits = pd.read_csv(run.splits, dtype={"image_id": str, "lesion_id": str})
    counts = split_summary(splits, splits["split"], tuple(metrics["class_names"]))
    summary = json.loads(run.data_summary.read_text())
    timings = run.root / "timings.json"
    seconds = json.loads(timings.read_text()) if timings.is_file() else {}
    extra = torch.load(run.model, map_location="cpu", weights_only=False).get("extra", {})
    return write_run_report(run, metrics, cfg=cfg, split_counts=counts, summary=summary, seconds=seconds,
                            best_epoch=int(extra.get("best_epoch", 0)))
