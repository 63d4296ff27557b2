"""Operating points: thresholds meet their targets on validation; the most-severe-suspected rule."""

from __future__ import annotations

import numpy as np
import pytest

from lesionlab.data.taxonomy import HAM7, triage_priority
from lesionlab.evaluation.metrics import MetricWarning
from lesionlab.evaluation.operating_points import (
    PRIORITY1,
    most_severe_suspected,
    operating_point_table,
    rates_at,
    rule_summary,
    severity_thresholds,
    threshold_for_sensitivity,
    threshold_for_specificity,
)
from lesionlab.inference.triage import decide_triage

CLASSES = HAM7.classes


def scored(n: int, seed: int, prevalence: float = 0.2, ties: bool = False) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    pos = rng.random(n) < prevalence
    score = rng.normal(0, 1, n) + 1.2 * pos
    return pos, np.round(score, 1) if ties else score


def all_operating_points(pos: np.ndarray, score: np.ndarray) -> np.ndarray:
    """(sensitivity, specificity) at every distinct threshold, by brute force."""
    return np.array([rates_at(pos, score, t) for t in np.unique(score)])


@pytest.mark.parametrize("target", [0.8, 0.9, 0.95])
@pytest.mark.parametrize(("seed", "ties"), [(0, False), (1, True), (2, False)])
def test_threshold_reaches_the_requested_specificity_on_validation(target: float, seed: int, ties: bool) -> None:
    pos, score = scored(1_000, seed, ties=ties)
    t = threshold_for_specificity(pos, score, target)
    sens, spec = rates_at(pos, score, t)
    assert spec >= target
    points = all_operating_points(pos, score)
    meeting = points[points[:, 1] >= target]
    assert sens == pytest.approx(meeting[:, 0].max())  # the most sensitive threshold that meets the target
    assert spec == pytest.approx(meeting[meeting[:, 0] == sens, 1].max())


@pytest.mark.parametrize("target", [0.9, 0.95])
@pytest.mark.parametrize("seed", [0, 3])
def test_threshold_reaches_the_requested_sensitivity_and_is_the_most_specific(target: float, seed: int) -> None:
    pos, score = scored(1_000, seed)
    t = threshold_for_sensitivity(pos, score, target)
    sens, spec = rates_at(pos, score, t)
    assert sens >= target
    points = all_operating_points(pos, score)
    assert spec == pytest.approx(points[points[:, 0] >= target, 1].max())


def synthetic_probs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, len(CLASSES), n)
    y[: len(CLASSES)] = np.arange(len(CLASSES))
    logits = rng.normal(0, 1, (n, len(CLASSES)))
    logits[np.arange(n), y] += 1.5
    p = np.exp(logits)
    return y, p / p.sum(axis=1, keepdims=True)


def test_table_thresholds_come_from_validation_and_meet_targets_there() -> None:
    y_val, p_val = synthetic_probs(3_000, 0)
    y_test, p_test = synthetic_probs(2_000, 1)
    table = operating_point_table(y_val, p_val, y_test, p_test, CLASSES)
    assert set(table["target"]) == {*CLASSES, PRIORITY1}
    assert len(table) == (len(CLASSES) + 1) * 5
    for row in table.itertuples():
        target = float(row.criterion.split("≥ ")[1].rstrip("%")) / 100
        measured = row.val_specificity if row.criterion.startswith("sensitivity") else row.val_sensitivity
        assert measured >= target - 1e-12, row
    p1 = table[table["target"] == PRIORITY1].iloc[0]
    pos = np.isin(y_val, [i for i, c in enumerate(CLASSES) if triage_priority(c) == 1])
    score = p_val[:, [CLASSES.index("bcc"), CLASSES.index("mel")]].sum(axis=1)
    assert p1["val_sensitivity"] == pytest.approx(rates_at(pos, score, p1["threshold"])[0])


def test_absent_class_gives_nan_with_a_warning() -> None:
    y_val, p_val = synthetic_probs(500, 2)
    keep = y_val != CLASSES.index("df")
    with pytest.warns(MetricWarning, match="df"):
        table = operating_point_table(y_val[keep], p_val[keep], y_val, p_val, CLASSES)
    assert table[table["target"] == "df"]["threshold"].isna().all()


def test_most_severe_suspected_matches_the_serving_triage_rule() -> None:
    y, p = synthetic_probs(3_000, 4)
    thresholds = severity_thresholds(y, p, CLASSES, 0.9)
    assert set(thresholds) == {"bcc", "mel"}
    decision = most_severe_suspected(p, CLASSES, thresholds)
    for row, d in zip(p[:500], decision[:500], strict=True):
        assert triage_priority(CLASSES[d]) == decide_triage(row, CLASSES, thresholds).priority
    flagged = decision != p.argmax(axis=1)
    assert flagged.any()
    assert all(triage_priority(CLASSES[d]) == 1 for d in decision[flagged])
    idx = np.flatnonzero(flagged)
    assert all(p[i, decision[i]] >= thresholds[CLASSES[decision[i]]] for i in idx)


def test_rule_raises_priority_one_sensitivity_on_the_data_it_was_tuned_for() -> None:
    y, p = synthetic_probs(4_000, 5)
    summary = rule_summary(y, p, CLASSES, severity_thresholds(y, p, CLASSES, 0.95))
    assert summary["most_severe"]["priority1_sensitivity"] >= 0.95
    assert summary["most_severe"]["priority1_sensitivity"] >= summary["top1"]["priority1_sensitivity"]
    assert np.array(summary["most_severe"]["triage_confusion_matrix"]).sum() == len(y)
    no_rule = rule_summary(y, p, CLASSES, {})
    assert no_rule["most_severe"] == no_rule["top1"]
