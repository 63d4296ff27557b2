"""Triage priority of one prediction, with the rule that produced it.

1. **Operating point**: when the model file stores per-class decision thresholds (``Preprocessing.thresholds``,
   chosen on validation data, e.g. for melanoma sensitivity), any class whose probability reaches its threshold
   raises the priority to that class's priority — the most urgent such class wins. A melanoma at 30 % with a
   25 % operating threshold is referred even when "nevus" is the top-1 diagnosis.
2. **Top-1 diagnosis**: otherwise the priority of the most probable diagnosis (1 = MEL/BCC/SCC, 2 = AK/nevus,
   3 = benign).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from lesionlab.data.taxonomy import triage_priority


@dataclass(frozen=True)
class TriageDecision:
    priority: int
    rule: str
    rule_text: str


def decide_triage(probs: np.ndarray, class_names: Sequence[str],
                  thresholds: Mapping[str, float] | None = None) -> TriageDecision:
    """Apply the operating-point rule, then the top-1 rule, to one image's probabilities ``(C,)``."""
    top = int(np.argmax(probs))
    top_label = class_names[top]
    top_priority = triage_priority(top_label)
    hits = [(triage_priority(c), -float(probs[i]), c, float(probs[i]), float(thresholds[c]))
            for i, c in enumerate(class_names) if thresholds and c in thresholds and probs[i] >= thresholds[c]]
    if hits:
        priority, _, label, p, t = min(hits)
        if priority < top_priority:
            return TriageDecision(priority, "operating-threshold",
                                  f"P({label}) = {p:.3f} reaches its operating threshold {t:.3f} "
                                  f"(priority {priority}, above top-1 {top_label})")
    return TriageDecision(top_priority, "top-1",
                          f"top-1 diagnosis {top_label} (P = {float(probs[top]):.3f}) has priority {top_priority}")
