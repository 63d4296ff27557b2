"""Report sections of the evaluation-depth artifacts: PR curves, calibration, operating points, the triage rule,
Grad-CAM and training dynamics. Each section is added only when its artifact exists in the directory."""

from __future__ import annotations

import html
import json
from pathlib import Path

import pandas as pd

from lesionlab.reports.dynamics import dynamics_table
from lesionlab.reports.html import Report, image_html, table_html


def _read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def add_pr_section(report: Report, directory: Path, prefix: str = "") -> None:
    fig = directory / "figures" / f"{prefix}pr.png"
    if fig.is_file():
        report.add("Precision-recall curves", image_html(fig, "precision-recall curves") +
                   "<p class='muted'>One vs rest; AP = average precision. A rare class's chance level is its "
                   "prevalence, so PR curves show what ROC curves hide under class imbalance.</p>")


def add_calibration_section(report: Report, directory: Path) -> None:
    cal = _read_json(directory / "calibration.json")
    if cal is None:
        return
    names = {"ece": "ECE (equal-width bins)", "ece_equal_mass": "ECE (equal-mass bins)", "brier": "Brier score",
             "nll": "negative log-likelihood"}
    after = f"after ({cal['temperature_label']})" if "temperature_label" in cal else \
        f"after (T = {cal.get('temperature', 1.0):.3f})"
    columns = {k: v for k, v in (("before temperature scaling", cal.get("before")), (after, cal.get("after"))) if v}
    frame = pd.DataFrame({col: {names[k]: v[k] for k in names if k in v} for col, v in columns.items()})
    frame.index.name = "metric"
    body = table_html(frame) + f"<p class='muted'>{html.escape(str(cal.get('note', '')))}; " \
        f"{cal.get('bins', 15)} bins. Lower is better for every row.</p>"
    fig = directory / "figures" / "reliability.png"
    if fig.is_file():
        body += image_html(fig, "reliability diagram")
    report.add("Calibration", body)


def add_operating_points_section(report: Report, directory: Path) -> None:
    path = directory / "operating_points.csv"
    if not path.is_file():
        return
    table = pd.read_csv(path).set_index(["target", "criterion"])
    table.index = [f"{t} — {c}" for t, c in table.index]
    table.index.name = "target — criterion"
    report.add("Operating points", table_html(table) +
               "<p class='muted'>Thresholds are chosen on the validation split (the lowest threshold meeting a "
               "specificity target, the highest meeting a sensitivity target) and then applied unchanged to the "
               "held-out test split. Scores are calibrated probabilities; 'priority 1 vs rest' scores the summed "
               "probability of the malignant classes.</p>")


def _cm_table(cm: list[list[int]], labels: list[str]) -> str:
    frame = pd.DataFrame(cm, index=[f"true {c}" for c in labels], columns=[f"pred {c}" for c in labels])
    frame.index.name = ""
    return table_html(frame)


def add_triage_rule_section(report: Report, directory: Path) -> None:
    rule = _read_json(directory / "triage_rule.json")
    if rule is None:
        return
    classes = rule["class_names"]
    thr = ", ".join(f"{k} ≥ {v:.3f}" for k, v in rule["thresholds"].items()) or "none stored"
    summary = pd.DataFrame({
        "top-1 rule": {k: rule["top1"][k] for k in ("priority1_sensitivity", "priority1_specificity", "accuracy")},
        "most severe suspected": {k: rule["most_severe"][k]
                                  for k in ("priority1_sensitivity", "priority1_specificity", "accuracy")}})
    summary.index.name = "test split"
    body = (f"<p>Thresholds (chosen on validation for sensitivity ≥ {rule.get('sensitivity_target')}): {thr}. "
            "A priority-1 class whose probability reaches its threshold is the decision even when another class has "
            "the top score.</p>" + table_html(summary) +
            "<h3>Triage priorities, most-severe-suspected rule</h3>" +
            _cm_table(rule["most_severe"]["triage_confusion_matrix"], ["1", "2", "3"]) +
            "<h3>Triage priorities, top-1 rule</h3>" +
            _cm_table(rule["top1"]["triage_confusion_matrix"], ["1", "2", "3"]) +
            "<h3>Classes, most-severe-suspected rule</h3>" +
            _cm_table(rule["most_severe"]["confusion_matrix"], classes))
    report.add("Most severe suspected class", body)


def add_gradcam_section(report: Report, directory: Path) -> None:
    fig = directory / "figures" / "gradcam_gallery.png"
    meta = _read_json(directory / "gradcam.json")
    if not fig.is_file() or meta is None:
        return
    body = (f"<p>{html.escape(meta['method'])} of the predicted class for {meta['images']} test images "
            "(class-balanced sample); each pair shows the image and its heat-map, the lesion outline in white.</p>")
    scores = directory / "cam_in_lesion.csv"
    if meta.get("masks") and scores.is_file():
        body += (table_html(pd.read_csv(scores).set_index("class")) +
                 "<p class='muted'>CAM in lesion = share of the heat-map mass inside the lesion mask, averaged per "
                 "true class (1 = all inside). Low values flag a model that looks at the background, rulers, "
                 "hair or the dermatoscope's dark corners.</p>")
    else:
        body += "<p class='muted'>No lesion masks were found, so the CAM-in-lesion score is not reported.</p>"
    report.add("Grad-CAM", body + image_html(fig, "Grad-CAM gallery"))


def add_dynamics_section(report: Report, history: pd.DataFrame) -> None:
    if len(history) == 0:
        return
    report.add("Training dynamics", table_html(dynamics_table(history)) +
               "<p class='muted'>Slopes are least-squares changes per epoch over the epoch ranges; the gap rows are "
               "train − validation (for accuracy a positive final gap means over-fitting; for the loss a negative "
               "one does).</p>")


def add_test_depth_sections(report: Report, directory: Path, prefix: str = "") -> None:
    """The sections computed on the test (or evaluation) data, in report order."""
    add_pr_section(report, directory, prefix)
    add_calibration_section(report, directory)
    add_operating_points_section(report, directory)
    add_triage_rule_section(report, directory)
    add_gradcam_section(report, directory)
