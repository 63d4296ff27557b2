"""The cascade's escalation rule: a narrow top-1 lead or a probability near a triage threshold."""

from __future__ import annotations

import numpy as np
import pytest

from lesionlab.config import ConfigError
from lesionlab.inference.cascade import CascadeRule
from lesionlab.registry import UnknownNameError

CLASSES = ("mel", "nv", "bkl")


def test_escalates_narrow_leads() -> None:
    probs = np.array([[0.9, 0.05, 0.05], [0.45, 0.4, 0.15], [0.1, 0.6, 0.3]])
    assert CascadeRule(margin=0.1, band=0.0).escalate(probs, CLASSES).tolist() == [False, True, False]
    assert CascadeRule(margin=0.35, band=0.0).escalate(probs, CLASSES).tolist() == [False, True, True]
    assert not CascadeRule(margin=0.0, band=0.0).escalate(probs, CLASSES).any()


def test_escalates_near_a_triage_threshold() -> None:
    probs = np.array([[0.12, 0.8, 0.08], [0.02, 0.9, 0.08], [0.5, 0.3, 0.2]])
    rule = CascadeRule(margin=0.0, band=0.3)  # within a factor e^0.3 = 1.35 of mel's threshold 0.1
    assert rule.escalate(probs, CLASSES, {"mel": 0.1}).tolist() == [True, False, False]
    assert not rule.escalate(probs, CLASSES, {}).any()


def test_round_trip_and_refusals() -> None:
    rule = CascadeRule(margin=0.15, band=0.3, chosen_on="validation")
    assert CascadeRule.from_dict(rule.as_dict()) == rule
    with pytest.raises(ConfigError, match="margin"):
        CascadeRule.from_dict({"band": 0.1})
    with pytest.raises(ConfigError, match=">= 0"):
        CascadeRule(margin=-0.1, band=0.0)
    with pytest.raises(UnknownNameError, match="d4"):  # an unknown policy name lists the valid ones
        CascadeRule(margin=0.1, band=0.0, then="d8")
