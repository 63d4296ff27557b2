"""Report sections on what a headline number hides: bootstrap confidence intervals, the subgroup table, the triage
operating point and the out-of-distribution detector. Each is added only when its artifact exists."""

from __future__ import annotations

import html
import json
from pathlib import Path

import pandas as pd

from lesionlab.reports.html import Report, table_html

CI_ROWS = (("balanced_accuracy", "balanced accuracy"), ("auc_macro", "macro AUC"), ("accuracy", "accuracy"),
           ("priority1_sensitivity", "priority-1 sensitivity (triage)"),
           ("priority1_specificity", "priority-1 specificity (triage)"))


def _ci_text(ci: list | None) -> str:
    return "–" if not ci else f"{ci[0]:.3f} – {ci[1]:.3f}"


def ci_frame(metrics: dict) -> pd.DataFrame | None:
    """Point estimate and 95 % CI per headline figure and per-class recall."""
    ci = metrics.get("ci95")
    if not ci:
        return None
    op = metrics.get("triage_operating_point") or {}
    point = {"balanced_accuracy": metrics.get("balanced_accuracy"), "auc_macro": metrics.get("auc_macro"),
             "accuracy": metrics.get("accuracy"), "priority1_sensitivity": op.get("sensitivity"),
             "priority1_specificity": op.get("specificity")}
    rows = {label: {"estimate": point[key], "95% CI": _ci_text(ci.get(key))} for key, label in CI_ROWS}
    for name, interval in (ci.get("recall") or {}).items():
        rows[f"recall {name}"] = {"estimate": (metrics.get("per_class", {}).get(name) or {}).get("recall"),
                                  "95% CI": _ci_text(interval)}
    frame = pd.DataFrame(rows).T
    frame["estimate"] = pd.to_numeric(frame["estimate"], errors="coerce")
    frame.index.name = "metric (test split)"
    return frame


def add_ci_section(report: Report, metrics: dict) -> None:
    frame = ci_frame(metrics)
    if frame is None:
        return
    ci = metrics["ci95"]
    report.add("Confidence intervals (95 %)", table_html(frame) + (
        f"<p class='muted'>{html.escape(ci['method'])} over the {ci['lesions']} lesions of the "
        f"{metrics.get('n')} test images: a replicate draws lesions with replacement and keeps all images of each, "
        "so images of one lesion never count as independent evidence. Rare classes have wide intervals.</p>"))


def add_operating_point_section(report: Report, metrics: dict) -> None:
    op = metrics.get("triage_operating_point")
    if not op:
        return
    thr = ", ".join(f"{k} ≥ {v:.3f}" for k, v in (op.get("thresholds") or {}).items()) or "none"
    report.add("Triage operating point", f"<p class='notice'><b>{html.escape(op['statement'])}</b></p>"
               f"<p class='muted'>Rule: {html.escape(op['rule'])}; stored thresholds: {html.escape(thr)}.</p>")


def add_subgroup_section(report: Report, directory: Path) -> None:
    path = directory / "subgroups.csv"
    if not path.is_file():
        return
    frame = pd.read_csv(path, keep_default_na=False, na_values=[""])
    if frame.empty:
        return
    show = pd.DataFrame({
        "n": frame["n"], "priority-1 n": frame["priority-1 n"],
        "balanced accuracy": frame["balanced accuracy"],
        "bal. acc. 95% CI": [_ci_text([lo, hi]) if pd.notna(lo) else "–" for lo, hi in
                             zip(frame["balanced accuracy CI low"], frame["balanced accuracy CI high"], strict=True)],
        "malignant sensitivity": frame["malignant sensitivity"],
        "sens. 95% CI": [_ci_text([lo, hi]) if pd.notna(lo) else "–" for lo, hi in
                         zip(frame["malignant sensitivity CI low"], frame["malignant sensitivity CI high"],
                             strict=True)],
        "flag": [f"⚠ {f}" if isinstance(f, str) and f else "" for f in frame["flag"]]})
    show.index = [f"{a}: {b}" for a, b in zip(frame["field"], frame["subgroup"], strict=True)]
    show.index.name = "subgroup"
    flagged = int((show["flag"] != "").sum())
    report.add("Subgroups (age band, sex, anatomical site)", table_html(show) + (
        f"<p><b>{flagged} subgroup(s) flagged</b>: their 95 % interval lies wholly below the overall figure.</p>"
        if flagged else "<p>No subgroup's 95 % interval lies wholly below the overall figure.</p>") +
        "<p class='muted'>Malignant sensitivity = priority-1 (MEL/BCC/SCC) images called priority 1 by the stored "
        "operating rule. Intervals: lesion-level bootstrap within the subgroup; subgroups under 10 images are "
        "omitted.</p>")


def add_ood_section(report: Report, directory: Path) -> None:
    summary_path, table_path = directory / "ood.json", directory / "ood_eval.csv"
    if not summary_path.is_file() and not table_path.is_file():
        return
    body = ""
    if summary_path.is_file():
        s = json.loads(summary_path.read_text())
        flagged = s.get("test_flagged")
        body += (f"<p>Detector: <b>{html.escape(str(s.get('method')))}</b> — {html.escape(str(s.get('rule')))}. "
                 f"It flags <b>{100 * flagged:.1f}%</b> of the {s.get('test_images')} held-out test lesions as out of "
                 "distribution; a flagged image gets no triage priority.</p>" if flagged is not None else "")
    if table_path.is_file():
        t = pd.read_csv(table_path)
        t.index = [f"{d} — {g}" for d, g in zip(t.pop("detector"), t.pop("group"), strict=True)]
        t.index.name = "detector — group"
        body += table_html(t) + ("<p class='muted'>AUROC: OOD images vs the held-out test lesions, by score. "
                                 "FPR@95TPR: share of OOD images passing at the threshold that keeps 95 % of test "
                                 "lesions. flagged: share above the detector's threshold (chosen on validation). "
                                 "gate_rejects: share the input "
                                 "quality gate refuses before the model. From 'lesionlab ood eval'.</p>")
    report.add("Out-of-distribution detection", body)
