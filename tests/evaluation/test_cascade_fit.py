"""Fitting the cascade on validation: the cheapest rule that reproduces the full policy's answers."""

from __future__ import annotations

import numpy as np
import pytest

from lesionlab.config import ConfigError
from lesionlab.evaluation.cascade_fit import cascade_grid, combine, fit_cascade

CLASSES = ("mel", "nv", "bkl")


def probabilities(seed: int = 0, n: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """A cheap policy and a full one that differ in top-1 only where the cheap lead is below 0.12."""
    rng = np.random.default_rng(seed)
    first = rng.dirichlet([1.0, 1.0, 1.0], size=n)
    full = first.copy()
    top2 = np.sort(first, 1)
    fragile = (top2[:, -1] - top2[:, -2]) < 0.12
    order = first.argsort(1)
    rows = np.flatnonzero(fragile)
    top, second = order[rows, -1], order[rows, -2]
    full[rows, top], full[rows, second] = first[rows, second], first[rows, top]
    return first, full


def test_picks_the_cheapest_rule_that_agrees() -> None:
    first, full = probabilities()
    fitted = fit_cascade(first, full, CLASSES, agreement=0.99)
    cheaper = [c for c in cascade_grid(first, full, CLASSES) if c.escalated < fitted.escalated]
    assert fitted.top1_agreement >= 0.99 and fitted.rule.margin == 0.15  # the grid's first margin above 0.12
    assert all(c.top1_agreement < 0.99 for c in cheaper)
    p = combine(first, full, fitted.rule.escalate(first, CLASSES))
    assert (p.argmax(1) == full.argmax(1)).mean() >= 0.99 and "labels not used" in fitted.rule.chosen_on


def test_thresholds_widen_the_rule() -> None:
    first, full = probabilities(1)
    full[:, 0] = np.where(np.abs(first[:, 0] - 0.2) < 0.03, 0.21 - (first[:, 0] - 0.2), first[:, 0])  # mel flips
    full /= full.sum(1, keepdims=True)
    fitted = fit_cascade(first, full, CLASSES, {"mel": 0.2}, agreement=0.98)
    assert fitted.triage_agreement >= 0.98 and fitted.top1_agreement >= 0.98
    assert fitted.rule.band > 0  # the top-1 margin alone cannot catch melanoma crossing its threshold


def test_refusals() -> None:
    first, full = probabilities()
    with pytest.raises(ConfigError, match=">= 50"):
        fit_cascade(first[:10], full[:10], CLASSES)
    rng = np.random.default_rng(3)
    with pytest.raises(ConfigError, match="no cascade rule"):  # answers unrelated to the cheap policy's
        fit_cascade(first, rng.dirichlet([1, 1, 1], size=len(first)), CLASSES, agreement=0.999)
