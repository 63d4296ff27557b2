"""The test-time cascade in the server: the first policy everywhere, the full one exactly where the rule escalates."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="module")
def batch(predictor, unseen_images: list[Path]) -> np.ndarray:
    return np.stack([predictor.preprocess(path) for path in unseen_images[:8]])


def cascading(serving_run: Path, **rule: float):
    """A two-member predictor of the tiny run that stores a cascade rule (none, then d4)."""
    from lesionlab.serving.predictor import Predictor

    p = Predictor.load([serving_run, serving_run])
    p.prep = replace(p.prep, cascade={"first": "none", "then": "d4", **rule})
    return p


def test_cascade_gives_the_full_policy_exactly_where_it_escalates(serving_run: Path, batch: np.ndarray) -> None:
    from lesionlab.inference.cascade import CascadeRule
    from lesionlab.serving.fastpath import FastPath

    fast = FastPath(cascading(serving_run, margin=0.0, band=0.0))
    first, _ = fast.predict(batch, "none")
    full, _ = fast.predict(batch, "d4")
    margins = np.diff(np.sort(first, 1)[:, -2:], axis=1)[:, 0]
    cut = float(np.median(margins))
    fast.cascade = CascadeRule(margin=cut, band=0.0)
    counts: list[int] = []
    probs, ood = fast.predict(batch, "cascade", escalated_out=counts)
    escalated = margins < cut
    assert 0 < escalated.sum() < len(batch) and counts == [int(escalated.sum())]
    assert np.allclose(probs[escalated], full[escalated], atol=1e-5)
    assert np.allclose(probs[~escalated], first[~escalated], atol=1e-5)
    _, ood_full = fast.predict(batch, "d4")  # the OOD verdict reads the identity view, as the full policy's does
    assert (ood is None) == (ood_full is None)
    if ood is not None:
        assert np.allclose(ood.score, ood_full.score, atol=1e-5)


def test_escalated_images_cost_what_d4_costs(serving_run: Path, batch: np.ndarray, monkeypatch) -> None:
    import lesionlab.serving.fastpath as fastpath

    fast = fastpath.FastPath(cascading(serving_run, margin=1.01, band=0.0))  # every image escalates
    seen: list[int] = []
    real = fastpath.forward_with_features

    def counting(module, x):
        seen.append(len(x))
        return real(module, x)

    monkeypatch.setattr(fastpath, "forward_with_features", counting)
    fast.predict(batch, "cascade")
    cascade, seen[:] = sum(seen), []
    fast.predict(batch, "d4")
    assert cascade == sum(seen) == 2 * 8 * len(batch)  # 2 members x 8 views, no second pass for the OOD features


def test_a_model_without_a_rule_refuses_the_cascade(app, predictor, jpeg_bytes: bytes) -> None:
    from fastapi.testclient import TestClient

    from lesionlab.config import ConfigError
    from lesionlab.config.serving import ServeConfig
    from lesionlab.serving.api import create_app

    r = TestClient(app).post("/v1/predict?tta=cascade", files={"image": ("x.jpg", jpeg_bytes, "image/jpeg")})
    assert r.status_code == 422 and r.json()["error"]["code"] == "no_cascade"
    with pytest.raises(ConfigError, match="cascade"):
        create_app(predictor, ServeConfig(tta="cascade"))


def test_the_general_engine_says_why_it_has_no_cascade(serving_run: Path) -> None:
    from lesionlab.config import ConfigError
    from lesionlab.config.serving import ServeConfig
    from lesionlab.serving.api import create_app

    p = cascading(serving_run, margin=0.2, band=0.0)
    with pytest.raises(ConfigError, match="fast engine"):
        create_app(p, ServeConfig(engine="general", tta="cascade"))
    from fastapi.testclient import TestClient

    subset = TestClient(create_app(p, ServeConfig(members="0"))).get("/v1/model").json()["inference"]
    assert subset["tta_default"] == p.prep.tta != "cascade"  # the rule was fitted on all members, not on a subset


def test_the_stored_rule_is_the_served_default_and_counted(serving_run: Path, jpeg_bytes: bytes) -> None:
    from fastapi.testclient import TestClient

    from lesionlab.serving.api import create_app
    from lesionlab.serving.fastpath import FastPath

    p = cascading(serving_run, margin=1.01, band=0.0)  # every image escalates: the answers are d4's
    client = TestClient(create_app(p))
    inference = client.get("/v1/model").json()["inference"]
    assert inference["tta_default"] == "cascade" and "cascade" in inference["tta_choices"]
    assert inference["cascade"]["margin"] == 1.01
    for _ in range(3):
        r = client.post("/v1/predict", files={"image": ("x.jpg", jpeg_bytes, "image/jpeg")})
        assert r.status_code == 200, r.text
    expected = FastPath(p).predict(p.preprocess(jpeg_bytes, "x.jpg")[None], "d4")[0][0]
    assert np.allclose(list(r.json()["probabilities"].values()), expected, atol=1e-5)
    r = client.post("/v1/predict/batch?tta=cascade", files=[("images", ("a.jpg", jpeg_bytes, "image/jpeg")),
                                                             ("images", ("b.jpg", jpeg_bytes, "image/jpeg"))])
    assert r.status_code == 200 and all("prediction" in item for item in r.json()["results"])
    text = client.get("/metrics").text
    assert "lesionlab_cascade_escalated_total 5.0" in text
