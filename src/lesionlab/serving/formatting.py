"""Render predictions as a terminal table, JSON or CSV (one row per image, one column per class). Images that got
no prediction (unreadable, or refused by the quality gate) get an error row of their own."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence

from lesionlab.serving.predictor import ImageError, Prediction

TRIAGE_TEXT = {1: "1 (malignant: refer)", 2: "2 (monitor)", 3: "3 (benign)",
               None: "none: NOT ASSESSABLE (out of distribution)"}


def _flag(value: bool | None) -> str:
    return "" if value is None else str(value).lower()


def format_predictions(results: Sequence[Prediction], class_names: Sequence[str], fmt: str,
                       errors: Sequence[ImageError] = ()) -> str:
    """``json`` (every field), ``csv`` (one row per image: the decision fields, then one column per class; a row per
    failed image with its error) or ``table`` (a block per image: top-k, triage priority with its rule, the unsure
    flag, the OOD flag, a seen-in-training mark; then the errors)."""
    if fmt == "json":
        return json.dumps([r.as_dict() for r in results] + [e.as_dict() for e in errors], indent=2) + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(["image", "prediction", "triage_priority", *CSV_DECISION_COLUMNS, "error", *class_names])
        for r in results:
            writer.writerow([r.source, r.label, "" if r.triage_priority is None else r.triage_priority, r.triage_rule,
                             r.triage_reason, _flag(r.unsure), _flag(r.ood), _flag(r.seen_in_training), "",
                             *(f"{r.probabilities[c]:.6f}" for c in class_names)])
        for e in errors:
            writer.writerow([e.source, "", "", *([""] * len(CSV_DECISION_COLUMNS)), f"{e.code}: {e.message}",
                             *([""] * len(class_names))])
        return buf.getvalue()
    if fmt != "table":
        raise ValueError(f"unknown format {fmt!r}; use table, json or csv")
    lines = [_table_block(r) for r in results]
    lines += [f"{e.source}\n    ERROR {e.code}: {e.message}" for e in errors]
    return "\n".join(lines) + "\n"


#: CSV columns between the triage priority and the class probabilities.
CSV_DECISION_COLUMNS = ("triage_rule", "triage_reason", "unsure", "ood", "seen_in_training")


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
    if r.ood:
        lines.append(f"    NOT ASSESSABLE (out of distribution): {r.ood_reason}")
    if r.seen_in_training:
        lines.append(f"    SEEN IN TRAINING: {r.seen_reason}; this result says nothing about new images")
    return "\n".join(lines)
