"""Lesion-level bootstrap intervals and the subgroup table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from lesionlab.evaluation.bootstrap import bootstrap_cis, lesion_weights, subgroup_table, weighted_auc

CLASSES = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")


def _data(n: int, seed: int = 0, noise: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, len(CLASSES), n)
    logits = rng.normal(0, noise, (n, len(CLASSES)))
    logits[np.arange(n), y] += 1.5
    p = np.exp(logits)
    return y, p / p.sum(1, keepdims=True)


def test_weighted_auc_matches_sklearn_with_ties() -> None:
    rng = np.random.default_rng(1)
    score = np.round(rng.random(200), 1)  # many ties
    positive = rng.random(200) < 0.2 + 0.6 * score
    w = rng.integers(0, 4, (6, 200)).astype(float)
    expected = [roc_auc_score(positive, score, sample_weight=wi) for wi in w]
    np.testing.assert_allclose(weighted_auc(w, positive, score), expected, rtol=1e-12)


def test_replicates_draw_whole_lesions() -> None:
    lesions = np.array(["a", "a", "a", "b", "c", "c"])
    w = lesion_weights(lesions, 50, seed=0)
    assert (w[:, 0] == w[:, 1]).all() and (w[:, 0] == w[:, 2]).all() and (w[:, 4] == w[:, 5]).all()
    assert (w[:, [0, 3, 4]].sum(1) == 3).all()  # three lesions drawn per replicate


def test_intervals_cover_the_estimate_and_widen_when_images_repeat_a_lesion() -> None:
    y, p = _data(400)
    ci = bootstrap_cis(y, p, np.arange(400).astype(str), CLASSES, thresholds={"mel": 0.2}, replicates=400)
    pred = p.argmax(1)
    bal = np.mean([(pred[y == c] == c).mean() for c in range(len(CLASSES))])
    assert ci["balanced_accuracy"][0] < bal < ci["balanced_accuracy"][1]
    assert set(ci["recall"]) == set(CLASSES) and ci["lesions"] == 400
    # the same 400 images, each copied 3x: image-level resampling would shrink the interval ~sqrt(3)-fold,
    # lesion-level resampling keeps it
    y3, p3 = np.repeat(y, 3), np.repeat(p, 3, axis=0)
    by_lesion = bootstrap_cis(y3, p3, np.repeat(np.arange(400), 3).astype(str), CLASSES, replicates=400)
    by_image = bootstrap_cis(y3, p3, np.arange(1200).astype(str), CLASSES, replicates=400)

    def width(c: dict) -> float:
        return c["balanced_accuracy"][1] - c["balanced_accuracy"][0]

    assert width(by_lesion) > 1.4 * width(by_image)
    assert width(by_lesion) == pytest.approx(width(ci), rel=0.25)


def test_subgroup_table_flags_a_subgroup_wholly_below_overall() -> None:
    y, p = _data(900, seed=2)
    rng = np.random.default_rng(3)
    sex = np.where(rng.random(900) < 0.5, "female", "male")
    bad = sex == "male"
    p[bad] = rng.dirichlet(np.ones(len(CLASSES)), int(bad.sum()))  # the model is guessing for one subgroup
    table = pd.DataFrame({"lesion_id": np.arange(900).astype(str), "age": rng.integers(20, 90, 900).astype(float),
                          "sex": sex, "site": "back"})
    frame = subgroup_table(table, y, p, CLASSES, replicates=300)
    assert set(frame["field"]) == {"age band", "sex"}  # one site value only: no site rows
    row = frame.set_index(["field", "subgroup"]).loc[("sex", "male")]
    assert "balanced accuracy below overall" in row["flag"]
    assert frame.set_index(["field", "subgroup"]).loc[("sex", "female"), "flag"] == ""
    assert (frame["balanced accuracy CI low"] <= frame["balanced accuracy"]).all()
