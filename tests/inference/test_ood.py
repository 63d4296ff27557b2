"""OOD detectors: each registered method separates a shifted cluster, thresholds hold their validation coverage,
the stored form round-trips (numpy and base64 JSON), ensembles combine members, features come from the model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lesionlab.config import ModelConfig
from lesionlab.inference.ood import (
    OOD_METHODS,
    EnsembleDetector,
    OODDetector,
    extract_features,
    fit_ood_detector,
    score_images,
)
from lesionlab.models.classifier import create_model
from lesionlab.registry import UnknownNameError


def _clusters(n: int, shift: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    centres = np.eye(3, 16) * 4
    features = centres[labels] + rng.normal(0, 1, (n, 16)) + shift
    logits = (features @ centres.T) / 4  # confident on the clusters, low energy far away
    return features.astype(np.float32), logits.astype(np.float32), labels


@pytest.mark.parametrize("method", ["mahalanobis", "knn"])
def test_feature_methods_flag_a_shifted_cluster(method: str) -> None:
    train, val, test_id = _clusters(600, 0, 0), _clusters(300, 0, 1), _clusters(300, 0, 2)
    far = _clusters(300, 6.0, 3)
    det = fit_ood_detector(method, train, val[:2], coverage=0.95)
    assert det.fitted_on["val_flagged"] == pytest.approx(0.05, abs=0.01)
    id_flagged = (det.score(*test_id[:2]) > det.threshold).mean()
    assert id_flagged < 0.12
    assert (det.score(*far[:2]) > det.threshold).mean() > 0.95
    assert det.normalised(np.array([det.reference, det.threshold])) == pytest.approx([0.0, 1.0])


def test_energy_scores_low_confidence_logits_higher() -> None:
    det = fit_ood_detector("energy", _clusters(200, 0, 0), _clusters(100, 0, 1)[:2])
    confident, flat = np.array([[9.0, 0, 0]]), np.array([[0.1, 0.1, 0.1]])
    assert det.score(np.zeros((1, 1)), flat)[0] > det.score(np.zeros((1, 1)), confident)[0]


@pytest.mark.parametrize("method", ["mahalanobis", "knn", "energy"])
def test_round_trip_numpy_and_json(method: str) -> None:
    det = fit_ood_detector(method, _clusters(300, 0, 0), _clusters(100, 0, 1)[:2])
    probe = _clusters(20, 3, 5)
    for form in ("numpy", "base64"):
        data = det.to_dict(form)
        if form == "base64":
            data = json.loads(json.dumps(data))  # what the ONNX sidecar holds
        again = OODDetector.from_dict(data)
        assert again.threshold == det.threshold and again.method == det.method
        np.testing.assert_allclose(again.score(*probe[:2]), det.score(*probe[:2]), rtol=1e-5)


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(UnknownNameError, match="mahalanobis"):
        fit_ood_detector("mahalanobis-v2", _clusters(50, 0, 0), _clusters(50, 0, 1)[:2])
    with pytest.raises(ValueError, match="coverage"):
        fit_ood_detector("energy", _clusters(50, 0, 0), _clusters(50, 0, 1)[:2], coverage=1.0)
    with pytest.raises(ValueError, match="validation"):
        fit_ood_detector("energy", _clusters(50, 0, 0), _clusters(1, 0, 1)[:2])
    with pytest.raises(ValueError, match="format"):
        OODDetector.from_dict({"method": "energy"})
    assert set(OOD_METHODS.names()) == {"mahalanobis", "energy", "knn", "knn-compact", "knn-tiny", "knn-oe"}
    with pytest.raises(ValueError, match="outlier"):  # knn-oe needs non-lesion images: fit_knn_oe
        fit_ood_detector("knn-oe", _clusters(50, 0, 0), _clusters(50, 0, 1)[:2])


def _with_logits(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return features.astype(np.float32), (features @ (np.eye(3, 16) * 4).T / 4).astype(np.float32)


def test_knn_oe_learns_from_outlier_sources_and_flags_one_it_never_saw() -> None:
    from lesionlab.inference.ood import fit_knn_oe

    train, val, test_id = _clusters(600, 0, 0), _clusters(300, 0, 1), _clusters(300, 0, 2)
    rng = np.random.default_rng(9)
    # two outlier sources of different sizes, each along a direction of its own
    source_a, source_b = rng.normal(0, 1, (80, 16)) + 5 * np.eye(16)[8], rng.normal(0, 1, (30, 16)) - 5 * np.eye(16)[0]
    outliers = _with_logits(np.vstack([source_a, source_b]))
    groups = np.array(["a"] * 80 + ["b"] * 30)
    det = fit_knn_oe(train[:2], val[:2], outliers, groups, coverage=0.95, bank_size=200)
    assert det.method == "knn-oe" and det.state["bank"].shape == (200, 16) and det.state["head_w"].shape == (16,)
    assert det.fitted_on["outlier_sources"] == 2 and det.fitted_on["val_flagged"] == pytest.approx(0.05, abs=0.01)
    assert (det.score(*test_id[:2]) > det.threshold).mean() < 0.12
    assert (det.score(*outliers) > det.threshold).mean() > 0.95
    unseen = _with_logits(rng.normal(0, 1, (200, 16)) + 5 * np.eye(16)[12])  # a direction no source took
    assert (det.score(*unseen) > det.threshold).mean() > 0.95
    again = OODDetector.from_dict(json.loads(json.dumps(det.to_dict("base64"))))  # the ONNX sidecar's form
    np.testing.assert_allclose(again.score(*unseen), det.score(*unseen), rtol=1e-5)
    with pytest.raises(ValueError, match="outlier"):
        fit_knn_oe(train[:2], val[:2], (outliers[0][:1], outliers[1][:1]))


def test_compact_knn_keeps_a_small_bank() -> None:
    from lesionlab.inference.ood import KNN_COMPACT_BANK

    features, logits, labels = _clusters(1500, 0, 0)
    state = OOD_METHODS.get("knn-compact").fit(features, logits, labels)
    assert state["bank"].shape[0] == KNN_COMPACT_BANK and state["bank"].dtype == np.int8
    # the int8 bank scores like the float16 bank of the same images
    same = {"bank": (state["bank"].astype(np.float32) / 127).astype(np.float16), "k": state["k"]}
    near = _clusters(40, 0, 1)[0]
    for queries in (near, -near):  # on the training clusters, and opposite them
        np.testing.assert_allclose(OOD_METHODS.get("knn-compact").score(state, queries, None),
                                   OOD_METHODS.get("knn").score(same, queries, None), rtol=0.02)
    assert (OOD_METHODS.get("knn-compact").score(state, -near, None).min()
            > OOD_METHODS.get("knn-compact").score(state, near, None).max())
    from lesionlab.inference.ood import KNN_TINY_BANK

    tiny = OOD_METHODS.get("knn-tiny").fit(features, logits, labels)
    assert tiny["bank"].shape[0] == KNN_TINY_BANK and tiny["bank"].dtype == np.int8


def test_features_come_from_the_model_and_ensembles_average_members() -> None:
    torch.manual_seed(0)
    models = [create_model(ModelConfig(backbone="tiny-resnet"), 3).eval() for _ in range(2)]
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (12, 32, 32, 3), dtype=np.uint8)
    mean, std = (0.5,) * 3, (0.25,) * 3
    f, z = extract_features(models[0], images, mean, std, batch_size=5)
    assert f.shape == (12, models[0].num_features) and z.shape == (12, 3)
    with torch.no_grad():
        x = (torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.25
        np.testing.assert_allclose(z, models[0](x).numpy(), atol=1e-4)
    assert score_images(models[0], images, mean, std) is None  # no detector attached
    dets = []
    for m in models:
        fm, zm = extract_features(m, images, mean, std)
        dets.append(fit_ood_detector("mahalanobis", (np.repeat(fm, 3, 0) + rng.normal(0, .1, (36, fm.shape[1])),
                                                     np.repeat(zm, 3, 0), np.tile([0, 1, 2], 12)), (fm, zm)))
        m.ood_detector = dets[-1]
        single = score_images(m, images, mean, std)
        assert single.ood.shape == (12,) and single.reasons[0].startswith(("in distribution", "out of"))

    class Pair(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.members = torch.nn.ModuleList(models)

    pair = Pair()
    pair.ood_detector = EnsembleDetector(dets)
    both = score_images(pair, images, mean, std)
    expected = np.mean([d.normalised(score_images(m, images, mean, std).score)
                        for m, d in zip(models, dets, strict=True)], 0)
    np.testing.assert_allclose(both.score, expected, rtol=1e-6)
    assert (both.ood == (expected > 1)).all() and "members" in pair.ood_detector.rule
