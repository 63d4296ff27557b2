"""Choose a :class:`~lesionlab.inference.cascade.CascadeRule` on validation, without labels.

The cascade should give the answers of the full policy at a fraction of its cost, so its numbers are chosen by how
often it agrees with the full policy, not by accuracy: over a grid of (margin, band), the rule that escalates the
fewest validation images while its top-1 diagnosis and its triage priority (most-severe-suspected rule at the stored
thresholds) agree with the full policy's on at least ``agreement`` of them. Labels do not enter the choice; a member
that trained on the validation lesions (an ensemble's refit) still makes them look easier, so new images escalate a
little more often than validation did.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from lesionlab.config import ConfigError
from lesionlab.data.taxonomy import triage_priority
from lesionlab.evaluation.operating_points import most_severe_suspected
from lesionlab.inference.cascade import CascadeRule

MARGINS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5)
BANDS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0)


@dataclass(frozen=True)
class CascadeCandidate:
    """One grid point: its rule, the share of images escalated and its agreement with the full policy."""

    rule: CascadeRule
    escalated: float
    top1_agreement: float
    triage_agreement: float


def combine(first: np.ndarray, full: np.ndarray, escalated: np.ndarray) -> np.ndarray:
    """The cascade's probabilities: the full policy's on escalated rows, the first policy's elsewhere."""
    return np.where(np.asarray(escalated)[:, None], full, first)


def cascade_grid(first: np.ndarray, full: np.ndarray, class_names: Sequence[str],
                 thresholds: Mapping[str, float] | None = None, *, first_policy: str = "none",
                 then_policy: str = "d4") -> list[CascadeCandidate]:
    """Every (margin, band) of the grid scored against the full policy's answers."""
    thresholds = dict(thresholds or {})
    priority = np.array([triage_priority(c) for c in class_names])
    full_top1, full_triage = full.argmax(1), priority[most_severe_suspected(full, class_names, thresholds)]
    out = []
    for margin in MARGINS:
        for band in BANDS if thresholds else (0.0,):
            rule = CascadeRule(margin, band, first_policy, then_policy)
            esc = rule.escalate(first, class_names, thresholds)
            p = combine(first, full, esc)
            out.append(CascadeCandidate(rule, float(esc.mean()), float((p.argmax(1) == full_top1).mean()),
                                        float((priority[most_severe_suspected(p, class_names, thresholds)]
                                               == full_triage).mean())))
    return out


def fit_cascade(first: np.ndarray, full: np.ndarray, class_names: Sequence[str],
                thresholds: Mapping[str, float] | None = None, *, agreement: float = 0.985,
                first_policy: str = "none", then_policy: str = "d4") -> CascadeCandidate:
    """The cheapest grid rule whose top-1 and triage agreement with the full policy both reach ``agreement``."""
    if len(first) != len(full) or len(first) < 50:
        raise ConfigError(f"fitting a cascade needs the same >= 50 images under both policies, got {len(first)} and "
                          f"{len(full)}")
    ok = [c for c in cascade_grid(first, full, class_names, thresholds, first_policy=first_policy,
                                  then_policy=then_policy)
          if min(c.top1_agreement, c.triage_agreement) >= agreement]
    if not ok:
        raise ConfigError(f"no cascade rule of the grid agrees with the full policy on {agreement:.1%} of the images")
    best = min(ok, key=lambda c: (c.escalated, c.rule.margin + c.rule.band))
    note = (f"the fewest escalations ({best.escalated:.1%} of {len(first)} validation images) with top-1 and triage "
            f"agreement >= {agreement:.1%} with '{then_policy}' (labels not used)")
    rule = CascadeRule(best.rule.margin, best.rule.band, first_policy, then_policy, chosen_on=note)
    return CascadeCandidate(rule, best.escalated, best.top1_agreement, best.triage_agreement)


__all__ = ["BANDS", "MARGINS", "CascadeCandidate", "cascade_grid", "combine", "fit_cascade"]
