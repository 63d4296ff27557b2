"""Pure logic of the predictor: metadata validation, triage rules, the unsure threshold (synthetic inputs)."""

from __future__ import annotations

import numpy as np
import pytest

from lesionlab.inference.triage import decide_triage
from lesionlab.inference.unsure import fit_unsure_threshold, is_unsure
from lesionlab.serving.metadata import MetadataError, PatientMetadata

HAM = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")


@pytest.mark.parametrize(("kwargs", "expected"), [
    ({"age": "55", "sex": " Female ", "site": "BACK"}, {"age": 55.0, "sex": "female", "site": "back"}),
    ({"age": "", "sex": "", "site": None}, {}),
    ({"age": 0}, {"age": 0.0}),
    ({"site": "lower extremity"}, {"site": "lower extremity"}),
])
def test_metadata_parses_valid_values(kwargs: dict, expected: dict) -> None:
    assert PatientMetadata.parse(**kwargs).as_dict() == expected


@pytest.mark.parametrize(("kwargs", "field", "text"), [
    ({"age": -5}, "age", "between 0 and 120"),
    ({"age": 130}, "age", "between 0 and 120"),
    ({"age": "old"}, "age", "must be a number"),
    ({"age": float("nan")}, "age", "between 0 and 120"),
    ({"sex": "x"}, "sex", "female, male, unknown"),
    ({"site": "elbow pit"}, "site", "must be one of"),
])
def test_metadata_rejects_bad_values(kwargs: dict, field: str, text: str) -> None:
    with pytest.raises(MetadataError, match=text) as info:
        PatientMetadata.parse(**kwargs)
    assert info.value.field == field


def test_metadata_mapping_rejects_unknown_fields() -> None:
    with pytest.raises(MetadataError, match="unknown metadata field"):
        PatientMetadata.from_mapping({"age": 3, "weight": 70})


def _probs(**values: float) -> np.ndarray:
    p = np.array([values.get(c, 0.0) for c in HAM])
    return p / p.sum()


@pytest.mark.parametrize(("probs", "thresholds", "priority", "rule"), [
    (_probs(nv=0.7, mel=0.3), {}, 2, "top-1"),
    (_probs(nv=0.7, mel=0.3), {"mel": 0.25}, 1, "operating-threshold"),
    (_probs(nv=0.7, mel=0.2, bkl=0.1), {"mel": 0.25}, 2, "top-1"),
    (_probs(bkl=0.6, bcc=0.25, mel=0.15), {"mel": 0.1, "bcc": 0.2}, 1, "operating-threshold"),
    (_probs(mel=0.9, nv=0.1), {"mel": 0.5}, 1, "top-1"),  # already priority 1: the top-1 rule says so
    (_probs(bkl=0.8, nv=0.2), {"nv": 0.1}, 2, "operating-threshold"),
])
def test_triage_rules(probs: np.ndarray, thresholds: dict, priority: int, rule: str) -> None:
    decision = decide_triage(probs, HAM, thresholds)
    assert (decision.priority, decision.rule) == (priority, rule)
    assert decision.rule_text


def test_triage_names_the_most_probable_urgent_class() -> None:
    decision = decide_triage(_probs(bkl=0.5, bcc=0.3, mel=0.2), HAM, {"mel": 0.1, "bcc": 0.1})
    assert "P(bcc)" in decision.rule_text


def test_unsure_threshold_keeps_coverage_of_correct_predictions() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(500, 7)) * 3
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    targets = np.where(rng.random(500) < 0.7, probs.argmax(1), rng.integers(0, 7, 500))
    fitted = fit_unsure_threshold(probs, targets, coverage=0.9)
    assert fitted is not None and fitted.score == "msp"
    correct = probs.argmax(1) == targets
    sure_correct = (~is_unsure(probs[correct], fitted.threshold)).mean()
    assert sure_correct == pytest.approx(0.9, abs=0.01)
    assert "10th percentile" in fitted.rule and "correctly classified" in fitted.rule


def test_unsure_threshold_needs_validation_data() -> None:
    assert fit_unsure_threshold(np.zeros((0, 7)), np.zeros(0, dtype=int)) is None
    probs = np.full((30, 7), 1 / 7)
    probs[:, 0] += 0.1
    fitted = fit_unsure_threshold(probs / probs.sum(1, keepdims=True), np.zeros(30, dtype=int))
    assert fitted is not None and fitted.threshold == pytest.approx(probs[0, 0] / probs[0].sum())
    with pytest.raises(ValueError, match="coverage"):
        fit_unsure_threshold(probs, np.zeros(30, dtype=int), coverage=1.5)
