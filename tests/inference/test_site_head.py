"""The site head: a linear probe on frozen features that re-splits probability among the classes a clinic has,
leaves the others as the base model has them, and gives honest out-of-fold outputs; the conformal threshold rule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.special import log_softmax

from lesionlab.evaluation.operating_points import threshold_for_sensitivity
from lesionlab.inference.site_head import MIN_HEAD_CLASS, SiteHeadWeights, fit_site_head, head_classes

CLASSES = 7  # ham7: mel = 4, nv = 5


def clinic(n: int = 80, views: int = 2, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Features where one direction tells mel from nv, base log-probabilities that cannot (uniform over 7)."""
    rng = np.random.default_rng(seed)
    y = np.where(rng.random(n) < 0.3, 4, 5)
    centre = np.where(y == 4, 1.5, -1.5)[:, None] * np.eye(16)[0]
    features = centre[None] + rng.normal(size=(views, n, 16))
    base = np.broadcast_to(log_softmax(rng.normal(scale=0.1, size=(n, CLASSES)), axis=1), (views, n, CLASSES))
    return features.astype(np.float32), np.ascontiguousarray(base, dtype=np.float32), y, np.arange(n).astype(str)


def test_head_learns_the_clinic_classes_and_keeps_the_others(tmp_path: Path) -> None:
    features, base, y, lesions = clinic()
    head, oof = fit_site_head(features, base, y, lesions)
    assert list(head.classes) == [4, 5] and head.coef.shape == (2, 16)
    probs = np.exp(oof).mean(0)
    assert np.allclose(probs.sum(1), 1, atol=1e-5)
    # out of fold, the head tells mel from nv although the base model could not
    assert (probs[:, [4, 5]].argmax(1) == (y == 5)).mean() > 0.85
    # the classes the clinic lacks keep the base model's probability, image by image
    absent = [0, 1, 2, 3, 6]
    assert np.allclose(oof[:, :, absent], base[:, :, absent], atol=1e-5)
    head.save(tmp_path / "head.npz")
    again = SiteHeadWeights.load(tmp_path / "head.npz")
    assert np.allclose(again.log_probs(features[0], base[0]), head.log_probs(features[0], base[0]))


def test_head_needs_two_classes_with_enough_images() -> None:
    features, base, _, lesions = clinic(n=40)
    y = np.full(40, 5)
    y[: MIN_HEAD_CLASS - 1] = 4  # too few melanomas for the head to learn
    assert list(head_classes(y)) == [5]
    with pytest.raises(ValueError, match="two classes with at least 5 images"):
        fit_site_head(features, base, y, lesions)


def test_conformal_threshold_is_one_rank_more_cautious_with_twenty_positives() -> None:
    positive = np.r_[np.ones(20, bool), np.zeros(30, bool)]
    score = np.r_[np.arange(1, 21) / 20, np.linspace(0, 0.5, 30)]
    # in-sample: the highest threshold keeping 18 of 20 positives (the 3rd lowest positive score)
    assert threshold_for_sensitivity(positive, score, 0.9) == pytest.approx(3 / 20)
    # conformal: k = floor(21 * 0.1) = 2, so a new positive is flagged with probability >= 19 / 21
    assert threshold_for_sensitivity(positive, score, 0.9, conformal=True) == pytest.approx(2 / 20)
    assert threshold_for_sensitivity(positive, score, 0.99, conformal=True) == pytest.approx(1 / 20)
