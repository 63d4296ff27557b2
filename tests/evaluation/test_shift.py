"""Shift before labels: the MMD test finds a shift that exists and not one that does not; class mix distances."""

from __future__ import annotations

import numpy as np
import pytest

from lesionlab.evaluation.shift import class_mix, mmd_test, shift_summary


def test_mmd_detects_a_mean_shift_and_not_a_resample() -> None:
    rng = np.random.default_rng(0)
    a, same, moved = rng.normal(size=(120, 8)), rng.normal(size=(120, 8)), rng.normal(size=(120, 8)) + 0.6
    _, p_same = mmd_test(a, same, permutations=200)
    mmd_moved, p_moved = mmd_test(a, moved, permutations=200)
    assert p_same > 0.05 and p_moved < 0.01 and mmd_moved > 0
    with pytest.raises(ValueError, match="at least 2 images per set"):
        mmd_test(a[:1], same)


def test_class_mix_and_summary() -> None:
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.7, 0.3]])
    assert class_mix(probs, ["mel", "nv"]) == {"mel": 0.75, "nv": 0.25}
    rng = np.random.default_rng(1)
    s = shift_summary("clinic", "test", rng.normal(size=(30, 4)), rng.normal(size=(30, 4)), probs, probs[::-1][:2],
                      ["mel", "nv"], ood=np.array([True, False, False, False]), permutations=50)
    assert s.mix_distance == pytest.approx(0.25) and s.ood_rate == 0.25 and s.reference_ood_rate is None
    assert 0 < s.p_value <= 1 and s.to_dict()["target"] == "clinic"
