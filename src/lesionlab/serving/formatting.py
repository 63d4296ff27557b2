"""Render predictions as a terminal table, JSON or CSV (one row per image, one column per class)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence

from lesionlab.serving.predictor import Prediction

TRIAGE_TEXT = {1: "1 (malignant: refer)", 2: "2 (monitor)", 3: "3 (benign)"}


def _flag(value: bool | None) -> str:
    return "" if value is None else str(value).lower()


def format_predictions(results: Sequence[Prediction], class_names: Sequence[str], fmt: str) -> str:
    """``json`` (every field), ``csv`` (one row per image: the decision fields, then one column per class) or
    ``table`` (a block per image: top-k, triage priority with its rule, the unsure flag, a seen-in-training mark)."""
    if fmt == "json":
        return json.dumps([r.as_dict() for r in results], indent=2) + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(["image", "prediction", "triage_priority", *CSV_DECISION_COLUMNS, *class_names])
        for r in results:
            writer.writerow([r.source, r.label, r.triage_priority, r.triage_rule, r.triage_reason, _flag(r.unsure),
                             _flag(r.seen_in_training), *(f"{r.probabilities[c]:.6f}" for c in class_names)])
        return buf.getvalue()
    if fmt != "table":
        raise ValueError(f"unknown format {fmt!r}; use table, json or csv")
    return "\n".join(_table_block(r) for r in results) + "\n"


#: CSV columns between the triage priority and the class probabilities.
CSV_DECISION_COLUMNS = ("triage_rule", "triage_reason", "unsure", "seen_in_training")


def _table_block(r: Prediction) -> str:
    tops = "  ".join(f"{d.label} {d.probability:6.1%}" for d in r.top)
    lines = [r.source, f"    {tops}",
             f"    triage priority {TRIAGE_TEXT.get(r.triage_priority)} by rule {r.triage_rule}: {r.triage_reason}"]
    if r.unsure is None:
        lines.append(f"    unsure: n/a, {r.unsure_reason}")
    elif r.unsure:
        lines.append(f"    UNSURE: low confidence, rely on clinical assessment; {r.unsure_reason}")
    else:
        lines.append(f"    unsure: no, {r.unsure_reason}")
    if r.seen_in_training:
        lines.append(f"    SEEN IN TRAINING: {r.seen_reason}; this result says nothing about new images")
    return "\n".join(lines)
