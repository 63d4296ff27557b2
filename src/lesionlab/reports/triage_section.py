"""The triage task (``task: triage``): per-priority sensitivity, listed first in every triage report.

Priority 1 = malignant (MEL, BCC, SCC: refer urgently), 2 = AK / nevus (monitor), 3 = benign. What matters most is
how many priority-1 lesions the model catches, so the table leads with sensitivity per priority and counts the
dangerous error (a priority-1 lesion triaged as priority 3).
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from lesionlab.data.taxonomy import TRIAGE
from lesionlab.reports.html import Report, table_html


def is_triage(class_names: Iterable[str] | None) -> bool:
    """Whether a model's classes are the triage priorities P1, P2, P3."""
    return tuple(class_names or ()) == TRIAGE.classes


def priority_table(metrics: dict) -> pd.DataFrame:
    """Sensitivity, specificity, precision and support per priority (rows P1, P2, P3) from classification metrics."""
    rows = {}
    for code in TRIAGE.classes:
        m = metrics["per_class"][code]
        rows[code] = {"priority": TRIAGE.descriptions[code].split(" - ")[1].split(":")[0],
                      "sensitivity": m["recall"], "specificity": m["specificity"], "precision": m["precision"],
                      "support": int(m["support"])}
    frame = pd.DataFrame(rows).T
    frame.index.name = "priority"
    return frame


def missed_urgent(metrics: dict) -> tuple[int, int]:
    """(priority-1 lesions predicted priority 3, priority-1 lesions) from the confusion matrix."""
    cm = metrics["confusion_matrix"]
    return int(cm[0][2]), int(sum(cm[0]))


def add_priority_section(report: Report, metrics: dict) -> None:
    """Add "Triage: sensitivity per priority" when the metrics are of a triage model (no-op otherwise)."""
    if not is_triage(metrics.get("class_names")):
        return
    missed, total = missed_urgent(metrics)
    report.add("Triage: sensitivity per priority", table_html(priority_table(metrics)) + (
        f"<p><b>{missed} of {total}</b> priority-1 (malignant) lesions were triaged as priority 3 (benign). "
        f"Balanced accuracy (mean sensitivity) {metrics['balanced_accuracy']:.4f}.</p>"))
