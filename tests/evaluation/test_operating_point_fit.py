"""fit_operating_point: the one fit of temperature, priority-1 thresholds and the unsure threshold."""

from __future__ import annotations

import numpy as np
import pytest

from lesionlab.evaluation.operating_point_fit import fit_operating_point
from lesionlab.evaluation.operating_points import severity_thresholds
from lesionlab.inference.calibration import fit_temperature, probs_from_view_logits
from lesionlab.models.checkpoint import Preprocessing

HAM = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")


def _logits(n: int = 300, views: int = 2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 7, n)
    z = rng.normal(size=(views, n, 7)) * 2
    z[:, np.arange(n), y] += 4.0  # over-confident: the fitted temperature must exceed 1
    return z, y


def test_single_model_fits_temperature_thresholds_and_unsure() -> None:
    z, y = _logits()
    point = fit_operating_point(z, y, HAM, sensitivity=0.9)
    assert point.temperature == pytest.approx(fit_temperature(z, y)) and point.temperature != 1.0
    probs = probs_from_view_logits(z, point.temperature)
    np.testing.assert_array_equal(point.probs, probs)
    assert point.thresholds == severity_thresholds(y, probs, HAM, 0.9)
    assert set(point.thresholds) == {"mel", "bcc"} and point.unsure is not None  # ham7 priority 1: MEL, BCC
    prep = Preprocessing(32, "center-square", (0.5,) * 3, (0.5,) * 3, HAM, "ham7", thresholds={"vasc": 0.5})
    applied = point.apply(prep)
    assert applied.temperature == point.temperature and applied.thresholds["vasc"] == 0.5
    assert applied.unsure_threshold == point.unsure.threshold and applied.unsure_rule == point.unsure.rule


def test_options_switch_parts_off() -> None:
    z, y = _logits()
    point = fit_operating_point(z, y, HAM, calibrate=False, sensitivity=None, unsure=False)
    assert point.temperatures == (1.0,) and point.thresholds == {} and point.unsure is None


def test_ensemble_keeps_member_temperatures() -> None:
    (a, y), (b, _) = _logits(seed=1), _logits(seed=2)
    point = fit_operating_point([a, b], y, HAM, temperatures=[1.5, 2.0], weights=[0.25, 0.75])
    expected = 0.25 * probs_from_view_logits(a, 1.5) + 0.75 * probs_from_view_logits(b, 2.0)
    np.testing.assert_allclose(point.probs, expected)
    assert point.temperatures == (1.5, 2.0)
    with pytest.raises(ValueError, match="one per member"):
        _ = point.temperature
    with pytest.raises(ValueError, match="temperatures="):
        fit_operating_point([a, b], y, HAM)
