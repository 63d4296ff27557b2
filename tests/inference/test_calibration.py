"""Calibration maths on synthetic predictors with known calibration, and its agreement with inference."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from scipy.special import softmax

from lesionlab.inference.calibration import (
    brier_score,
    expected_calibration_error,
    fit_temperature,
    probs_from_view_logits,
    reliability_bins,
)
from lesionlab.inference.predict import predict_probs, predict_view_logits
from lesionlab.inference.tta import get_tta
from lesionlab.models.checkpoint import load_model


def calibrated_predictor(n: int, c: int, seed: int, scale: float = 2.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Logits, their softmax and labels drawn from that softmax: calibrated by construction."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, scale, size=(n, c))
    probs = softmax(logits, axis=1)
    y = (probs.cumsum(axis=1) > rng.random((n, 1))).argmax(axis=1)
    return logits, probs, y


@pytest.mark.parametrize("strategy", ["uniform", "quantile"])
@pytest.mark.parametrize(("c", "seed"), [(2, 0), (7, 1)])
def test_ece_of_a_perfectly_calibrated_predictor_is_about_zero(strategy: str, c: int, seed: int) -> None:
    _, probs, y = calibrated_predictor(200_000, c, seed)
    assert expected_calibration_error(y, probs, 15, strategy) < 0.006


@pytest.mark.parametrize("strategy", ["uniform", "quantile"])
def test_ece_of_an_overconfident_predictor_is_large(strategy: str) -> None:
    logits, _, y = calibrated_predictor(50_000, 5, 2)
    overconfident = softmax(3.0 * logits, axis=1)
    assert expected_calibration_error(y, overconfident, 15, strategy) > 0.05


def test_temperature_scaling_recovers_the_true_temperature_and_fixes_ece_on_held_out_data() -> None:
    logits, _, y = calibrated_predictor(60_000, 5, 3)
    shown = 3.0 * logits  # overconfident by a factor 3: the right temperature is 3
    val, test = slice(0, 30_000), slice(30_000, None)
    t = fit_temperature(shown[val], y[val])
    assert t == pytest.approx(3.0, rel=0.05)
    before = expected_calibration_error(y[test], probs_from_view_logits(shown[test], 1.0))
    after = expected_calibration_error(y[test], probs_from_view_logits(shown[test], t))
    assert before > 0.05 and after < 0.01


@pytest.mark.parametrize("temperature", [0.05, 0.3, 1.0, 2.5, 20.0])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_temperature_scaling_never_changes_the_argmax(temperature: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, rng.uniform(0.1, 10), size=(5_000, 7))
    scaled = probs_from_view_logits(logits, temperature)
    assert (scaled.argmax(axis=1) == logits.argmax(axis=1)).all()
    fitted = fit_temperature(logits, rng.integers(0, 7, size=5_000))
    assert (probs_from_view_logits(logits, fitted).argmax(axis=1) == logits.argmax(axis=1)).all()


def test_brier_score_bounds() -> None:
    y = np.array([0, 1, 2, 1])
    assert brier_score(y, np.eye(3)[y]) == 0.0
    assert brier_score(y, np.full((4, 3), 1 / 3)) == pytest.approx(2 / 3)
    assert brier_score(y, np.eye(3)[(y + 1) % 3]) == pytest.approx(2.0)


def test_equal_mass_bins_hold_equal_counts_and_equal_width_bins_respect_edges() -> None:
    _, probs, y = calibrated_predictor(3_000, 4, 4)
    r = reliability_bins(y, probs, 10, "quantile")
    assert len(r["count"]) == 10 and set(r["count"]) == {300.0}
    r = reliability_bins(y, probs, 10, "uniform")
    assert r["count"].sum() == 3_000
    assert all(lo <= c < lo + 0.1 + 1e-9 for lo, c in zip(np.floor(r["confidence"] * 10) / 10, r["confidence"],
                                                          strict=True))
    with pytest.raises(ValueError, match="strategy"):
        reliability_bins(y, probs, 10, "kmeans")


def test_view_logits_reproduce_predict_probs_with_tta_and_temperature(run_factory, random_images) -> None:
    model, prep = load_model(run_factory(tta="flips") / "model.pt")
    for tta, temperature in (("none", 1.0), ("flips", 1.7), ("identity+rot90+transpose", 0.6)):
        expected = predict_probs(model, random_images, prep.mean, prep.std, tta=tta, temperature=temperature)
        logits = predict_view_logits(model, random_images, prep.mean, prep.std, tta=tta)
        assert logits.shape[:2] == (len(get_tta(tta)), len(random_images))
        np.testing.assert_allclose(probs_from_view_logits(logits, temperature), expected, atol=1e-5)


def test_configurable_tta_views_are_the_dihedral_transforms() -> None:
    from lesionlab.registry import UnknownNameError

    x = torch.arange(9.0).view(1, 1, 3, 3)
    transpose, anti = get_tta("transpose+antitranspose")
    assert torch.equal(transpose(x), x.transpose(-1, -2))
    assert torch.equal(anti(x), x.flip(-1, -2).transpose(-1, -2))
    d4 = {tuple(v(x).flatten().tolist()) for v in get_tta("d4")}
    named = {tuple(v(x).flatten().tolist()) for v in get_tta(
        "identity+hflip+vflip+rot90+rot180+rot270+transpose+antitranspose")}
    assert d4 == named and len(named) == 8
    with pytest.raises(UnknownNameError, match="rot45"):
        get_tta("identity+rot45")
    with pytest.raises(ValueError, match="repeat"):
        get_tta("hflip+hflip")


def test_a_temperature_at_its_bound_warns(caplog: pytest.LogCaptureFixture) -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 7, size=200)
    flat = np.eye(7)[y] * 0.01 + rng.normal(0, 1e-4, size=(200, 7))  # right but nearly flat: T wants to go to 0
    with caplog.at_level(logging.WARNING, logger="lesionlab.inference.calibration"):
        t = fit_temperature(flat, y)
    assert t == pytest.approx(0.05, rel=0.02)
    assert "sits at its bound 0.05" in caplog.text and "nearly flat" in caplog.text and "200 validation" in caplog.text
    caplog.clear()
    logits, _, labels = calibrated_predictor(5_000, 5, 1)
    with caplog.at_level(logging.WARNING, logger="lesionlab.inference.calibration"):
        fit_temperature(2.0 * logits, labels)
    assert not caplog.records
