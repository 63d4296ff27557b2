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


def format_predictions(results: Sequence[Prediction], class_names: Sequence[str], fmt: str,
                       errors: Sequence[ImageError] = ()) -> str:
    if fmt == "json":
        return json.dumps([r.as_dict() for r in results] + [e.as_dict() for e in errors], indent=2) + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(["image", "prediction", "triage_priority", "ood", "error", *class_names])
        for r in results:
            writer.writerow([r.source, r.label, "" if r.triage_priority is None else r.triage_priority,
                             "" if r.ood is None else r.ood, "",
                             *(f"{r.probabilities[c]:.6f}" for c in class_names)])
        for e in errors:
            writer.writerow([e.source, "", "", "", f"{e.code}: {e.message}", *([""] * len(class_names))])
        return buf.getvalue()
    if fmt != "table":
        raise ValueError(f"unknown format {fmt!r}; use table, json or csv")
    lines = []
    for r in results:
        tops = "  ".join(f"{d.label} {d.probability:6.1%}" for d in r.top)
        unsure = "" if r.unsure is None else ("\n    UNSURE: low confidence, rely on clinical assessment" if r.unsure
                                              else "")
        ood = f"\n    {r.ood_reason}" if r.ood else ""
        lines.append(f"{r.source}\n    {tops}\n    triage priority {TRIAGE_TEXT.get(r.triage_priority)} "
                     f"({r.triage_rule}){unsure}{ood}")
    lines += [f"{e.source}\n    ERROR {e.code}: {e.message}" for e in errors]
    return "\n".join(lines) + "\n"
