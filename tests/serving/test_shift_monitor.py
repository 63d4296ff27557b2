"""Shift before labels in the service (issue 25 part 7): the monitor's test on features, and GET /v1/shift on the
built-in model after real requests."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from lesionlab.serving.shift_monitor import ShiftMonitor

CLASSES = ("a", "b", "c")


def _monitor(window: int = 200) -> tuple[ShiftMonitor, np.random.Generator]:
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(150, 16))
    return ShiftMonitor(reference, CLASSES, reference_mix={"a": 0.5, "b": 0.3, "c": 0.2}, window=window), rng


def test_same_distribution_passes_and_a_shifted_one_is_flagged() -> None:
    same, rng = _monitor()
    same.observe(rng.normal(size=(80, 16)), np.tile([0.6, 0.3, 0.1], (80, 1)))
    quiet = same.summary(permutations=100)
    assert quiet["images"] == 80 and quiet["p_value"] > 0.01 and quiet["verdict"].startswith("no shift")
    assert quiet["predicted_mix"] == {"a": 1.0, "b": 0.0, "c": 0.0} and quiet["mix_distance"] == pytest.approx(0.5)

    shifted, rng = _monitor()
    shifted.observe(rng.normal(size=(80, 16)) + np.r_[3.0, np.zeros(15)], np.tile([0.1, 0.2, 0.7], (80, 1)),
                    ood=np.r_[np.ones(8, bool), np.zeros(72, bool)])
    loud = shifted.summary(permutations=100)
    assert loud["p_value"] < 0.01 and loud["verdict"].startswith("shifted") and loud["ood_rate"] == pytest.approx(0.1)


def test_too_few_images_give_no_test_and_the_window_rolls() -> None:
    monitor, rng = _monitor(window=40)
    monitor.observe(rng.normal(size=(10, 16)), np.tile([0.2, 0.7, 0.1], (10, 1)))
    early = monitor.summary()
    assert early["p_value"] is None and "10 of the 30" in early["verdict"]
    monitor.observe(rng.normal(size=(100, 16)), np.tile([0.2, 0.7, 0.1], (100, 1)))
    assert monitor.summary(permutations=20)["images"] == 40  # only the last `window` images count
    assert ShiftMonitor.for_model(None, CLASSES) is None  # no kNN bank: nothing to compare with


@pytest.mark.realdata
def test_get_shift_after_real_requests(ham_images_dir) -> None:
    from lesionlab.config.serving import ServeConfig
    from lesionlab.serving.api import create_app
    from lesionlab.serving.predictor import Predictor

    client = TestClient(create_app(Predictor.pretrained(), ServeConfig(tta="none")))
    before = client.get("/v1/shift").json()
    assert before["images"] == 0 and before["reference_images"] >= 100 and before["reference_mix"]["nv"] > 0.5
    for path in sorted(ham_images_dir.glob("*.jpg"))[:3]:
        assert client.post("/v1/predict", files={"image": (path.name, path.read_bytes(), "image/jpeg")}).is_success
    after = client.get("/v1/shift").json()
    assert after["images"] == 3 and abs(sum(after["predicted_mix"].values()) - 1) < 1e-9
    assert after["p_value"] is None and "3 of the 30" in after["verdict"]
    off = TestClient(create_app(Predictor.pretrained(), ServeConfig(shift_window=0))).get("/v1/shift")
    assert off.status_code == 404 and off.json()["error"]["code"] == "no_shift_reference"
