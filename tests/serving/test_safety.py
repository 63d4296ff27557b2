"""Clinical safety end to end on the session's tiny real run: the quality gate (422 not_assessable, batch and
``predict`` error rows), the OOD flag (no triage priority), the detector in model.pt / ONNX / ensembles,
``ood fit`` on an existing run, ``ood eval``, and the report's CI, subgroup and operating-point sections."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from lesionlab.cli import main
from lesionlab.models.checkpoint import read_ood, store_ood
from lesionlab.serving.predictor import Predictor
from tests.serving.conftest import encode

pytestmark = pytest.mark.slow

RNG = np.random.default_rng(0)
NOT_ASSESSABLE = {
    "1x1 black PNG": Image.new("RGB", (1, 1)),
    "20000x3 black strip": Image.new("RGB", (20000, 3)),
    "blank white": Image.new("RGB", (300, 300), (255, 255, 255)),
    "blank black": Image.new("RGB", (300, 300)),
}


def _far_ood() -> dict[str, Image.Image]:
    from skimage import data

    return {"RGB noise": Image.fromarray(RNG.integers(0, 256, (300, 300, 3), dtype=np.uint8)),
            "natural photo (astronaut)": Image.fromarray(data.astronaut()),
            "natural photo (coffee)": Image.fromarray(data.coffee())}


@pytest.fixture(scope="module")
def client(app) -> TestClient:
    return TestClient(app)


def _post(client: TestClient, img: Image.Image):
    return client.post("/v1/predict", files={"image": ("upload.png", encode(img), "image/png")})


def test_blank_tiny_and_extreme_images_are_not_assessable(client: TestClient) -> None:
    for name, img in NOT_ASSESSABLE.items():
        r = _post(client, img)
        assert r.status_code == 422, f"{name}: {r.status_code} {r.text[:200]}"
        assert r.json()["error"]["code"] == "not_assessable" and "not assessable" in r.json()["error"]["message"]


def test_far_ood_images_get_no_triage_priority(client: TestClient, jpeg_bytes: bytes) -> None:
    lesion = client.post("/v1/predict", files={"image": ("l.jpg", jpeg_bytes, "image/jpeg")}).json()
    assert isinstance(lesion["ood"], bool) and lesion["ood_reason"] and lesion["ood_score"] is not None
    flagged = {}
    for name, img in _far_ood().items():
        body = _post(client, img).json()
        flagged[name] = body["ood"]
        if body["ood"]:
            assert body["triage_priority"] is None and body["triage_rule"] == "not-assessable"
            assert body["triage_reason"].startswith("not assessable: out of distribution")
        else:
            assert body["triage_priority"] in (1, 2, 3)
    assert sum(flagged.values()) >= 2, flagged  # even a 1-epoch 32-px model flags most far-OOD images


def test_batch_gives_not_assessable_its_own_error_row(client: TestClient, jpeg_bytes: bytes) -> None:
    files = [("images", ("a.jpg", jpeg_bytes, "image/jpeg")),
             ("images", ("dot.png", encode(NOT_ASSESSABLE["1x1 black PNG"]), "image/png"))]
    a, b = client.post("/v1/predict/batch", files=files).json()["results"]
    assert a["prediction"]["label"] and b["error"]["code"] == "not_assessable"


def test_model_info_reports_detector_gate_and_operating_point(client: TestClient) -> None:
    info = client.get("/v1/model").json()
    assert info["ood"]["available"] and info["ood"]["method"] == "knn"
    assert "validation" in info["ood"]["rule"]
    assert info["quality_gate"]["min_side"] == 16 and info["quality_gate"]["enabled"]
    op = info["triage"]["operating_point"]
    assert op["statement"].startswith("priority-1 sensitivity ≥ 0.9 chosen on validation")
    assert "95% CI" in op["statement"] and len(op["sensitivity_ci95"]) == 2
    assert len(info["metrics"]["ci95"]["balanced_accuracy"]) == 2


def test_predict_cli_writes_an_error_row(tmp_path: Path, serving_run: Path, unseen_images: list[Path],
                                         capsys: pytest.CaptureFixture[str]) -> None:
    dot = tmp_path / "dot.png"
    NOT_ASSESSABLE["1x1 black PNG"].save(dot)
    out = tmp_path / "out.csv"
    code = main(["-q", "predict", str(serving_run), str(unseen_images[0]), str(dot), "--format", "csv",
                 "--out", str(out)])
    assert code == 1  # an image got no prediction
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert [r["image"] for r in rows] == [str(unseen_images[0]), str(dot)]
    assert rows[0]["ood"] in ("true", "false") and rows[1]["error"].startswith("not_assessable:")
    assert "too small" in capsys.readouterr().err
    assert main(["-q", "predict", str(serving_run), str(dot), "--quality", "enabled=false"]) == 0
    assert main(["-q", "predict", str(serving_run), str(dot), "--quality", "size=3"]) == 2


def test_report_has_ci_subgroup_operating_point_and_ood_sections(serving_run: Path) -> None:
    html = (serving_run / "report.html").read_text()
    for heading in ("Confidence intervals (95 %)", "Subgroups (age band, sex, anatomical site)",
                    "Triage operating point", "Out-of-distribution detection"):
        assert heading in html
    metrics = json.loads((serving_run / "metrics.json").read_text())
    lo, hi = metrics["ci95"]["balanced_accuracy"]
    assert lo <= metrics["balanced_accuracy"] <= hi
    assert (serving_run / "subgroups.csv").is_file() and json.loads((serving_run / "ood.json").read_text())


def test_fit_ood_attaches_a_detector_to_an_existing_run(serving_run: Path, shared_data: Path,
                                                        tmp_path: Path) -> None:
    run = tmp_path / serving_run.name
    shutil.copytree(serving_run, run)
    stored = read_ood(run / "model.pt")
    store_ood(run / "model.pt", None)  # a run trained before LesionLab stored detectors
    (run / "ood.json").unlink()
    before = Predictor.load(run)
    assert before.ood_detector is None
    noise = Image.fromarray(RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    (plain,) = before.predict([noise])
    assert plain.ood is None and "ood fit" in plain.ood_reason
    assert main(["-q", "ood", "fit", str(run), "--data-root", str(shared_data)]) == 0
    after = Predictor.load(run)
    assert after.ood_detector.threshold == pytest.approx(stored["threshold"], rel=1e-4)  # same data, same fit
    assert json.loads((run / "ood.json").read_text())["test_images"] > 0
    assert "Out-of-distribution detection" in (run / "report.html").read_text()
    assert main(["-q", "ood", "eval", str(run), "--data-root", str(shared_data), "--methods", "knn,energy"]) == 0
    table = (run / "ood_eval.csv").read_text()
    for group in ("natural", "noise", "checkerboard", "text", "corrupted (severity 5)", "all far-OOD"):
        assert group in table
    assert "FPR@95TPR" in (run / "report.html").read_text()
    assert main(["-q", "ood", "fit", str(run), "--method", "nope"]) == 2


def test_detector_travels_to_onnx_and_ensembles(serving_run: Path, onnx_file: Path, predictor: Predictor) -> None:
    out = onnx_file  # exported by ``lesionlab export`` (tests/serving/conftest.py)
    sidecar = json.loads(out.with_name("model.preprocessing.json").read_text())
    assert sidecar["ood"]["method"] == "knn" and sidecar["features"]["name"] == "features"
    onnx = Predictor.load(out)
    images = [Image.fromarray(RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8)) for _ in range(3)]
    a, b = predictor.predict(images), onnx.predict(images)
    for p, q in zip(a, b, strict=True):
        assert p.ood == q.ood and p.ood_score == pytest.approx(q.ood_score, rel=1e-3)
    ensemble = Predictor.load([serving_run, serving_run])
    assert ensemble.ood_detector.method == "ensemble"
    e = ensemble.predict(images)
    for p, q in zip(a, e, strict=True):  # two identical members: the mean normalised score is the member's
        assert q.ood == p.ood
