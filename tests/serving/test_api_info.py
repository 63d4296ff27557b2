"""``GET /v1/model`` states what the model's card and metrics know — operating point, per-member calibration, test
figures — for the built-in ensemble, a single run and an ensemble of runs; the page footer shows them; the batch
limit is a 422 the contract (and schemathesis' negative-data check) knows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from schemathesis.config import SchemathesisConfig

from lesionlab.serving.api_info import statement

pytestmark = pytest.mark.slow

STATIC = Path(__file__).resolve().parents[2] / "src" / "lesionlab" / "serving" / "static"
CONFIG = Path(__file__).resolve().parents[2] / "schemathesis.toml"


@pytest.fixture(scope="module")
def builtin_info() -> dict:
    from lesionlab.builtin.card import load_card
    from lesionlab.builtin.registry import builtin_dir
    from lesionlab.serving.api import create_app
    from lesionlab.serving.predictor import Predictor

    predictor = Predictor.pretrained()
    info = TestClient(create_app(predictor)).get("/v1/model").json()
    return {"info": info, "card": load_card(builtin_dir())}


def test_builtin_states_operating_point_calibration_and_test_figures(builtin_info: dict) -> None:
    info, card = builtin_info["info"], builtin_info["card"]
    figs = next(iter(card["evaluations"].values()))["figures"]
    op = info["triage"]["operating_point"]
    assert op is not None and op["thresholds"] == card["triage_operating_point"]["thresholds"]
    assert op["sensitivity"] == pytest.approx(figs["priority1_sensitivity"]["value"])
    assert op["specificity_ci95"] == pytest.approx([figs["priority1_specificity"]["lo"],
                                                    figs["priority1_specificity"]["hi"]])
    assert "sensitivity >= 0.9" in op["statement"] and "0.935" in op["statement"]
    cal = info["calibration"]
    assert cal["calibrated"] and len(cal["members"]) == 2
    assert all(m["temperature"] == pytest.approx(card["calibration"]["temperature"]) for m in cal["members"])
    assert info["metrics"]["balanced_accuracy"] == pytest.approx(figs["balanced_accuracy"]["value"])
    assert info["metrics"]["ci95"]["auc_macro"] == pytest.approx([figs["auc_macro"]["lo"], figs["auc_macro"]["hi"]])
    assert info["inference"]["members"] == 2 and info["inference"]["backend"] == "onnx"
    # the served default is the card's: the test-time cascade fitted on validation, d4 still one request away
    assert info["inference"]["tta_default"] == "cascade" and "cascade" in card["serving"]["default"]
    assert info["inference"]["cascade"]["then"] == "d4" and "d4" in info["inference"]["tta_choices"]


def test_single_run_and_ensemble_of_runs(predictor, serving_run: Path) -> None:
    from lesionlab.serving.api import create_app
    from lesionlab.serving.predictor import Predictor

    metrics = json.loads((serving_run / "metrics.json").read_text())
    single = TestClient(create_app(predictor)).get("/v1/model").json()
    assert single["triage"]["operating_point"] == metrics["triage_operating_point"]
    assert [m["temperature"] for m in single["calibration"]["members"]] == [predictor.prep.temperature]
    assert single["calibration"]["temperature"] == predictor.prep.temperature
    ensemble = TestClient(create_app(Predictor.load([serving_run, serving_run]))).get("/v1/model").json()
    members = ensemble["calibration"]["members"]
    assert [m["temperature"] for m in members] == [predictor.prep.temperature] * 2
    assert ensemble["calibration"]["calibrated"] == (predictor.prep.temperature != 1.0)
    assert members[0]["metrics"]["balanced_accuracy"] == pytest.approx(metrics["balanced_accuracy"])


def test_statement_names_rule_thresholds_and_figures() -> None:
    text = statement({"rule": "sens >= 0.9", "thresholds": {"mel": 0.1}, "test_set": "t", "priority1_images": 5,
                      "sensitivity": 0.9, "sensitivity_ci95": [0.8, 0.95]})
    assert text == ("sens >= 0.9 (mel ≥ 0.100); t priority-1 sensitivity 0.900 (95% CI 0.800–0.950), specificity "
                    "not recorded (5 priority-1 test images)")


def test_page_footer_shows_calibration_and_inference() -> None:
    html, js = (STATIC / "index.html").read_text(), (STATIC / "app.js").read_text()
    for element in ("operating-point", "calibration", "inference"):
        assert f'id="{element}"' in html and f'$("{element}")' in js
    assert "auc_macro" in js and "cal.members" in js


def test_too_many_images_is_a_422_the_negative_data_check_accepts(app, jpeg_bytes: bytes) -> None:
    client = TestClient(app)
    limit = client.get("/v1/model").json()["limits"]["max_batch"]
    files = [("images", (f"{i}.jpg", jpeg_bytes, "image/jpeg")) for i in range(limit + 1)]
    r = client.post("/v1/predict/batch", files=files)
    assert r.status_code == 422 and r.json()["error"]["code"] == "too_many_images"
    spec = client.get("/openapi.json").json()["paths"]["/v1/predict/batch"]["post"]
    assert "422" in spec["responses"]
    expected = SchemathesisConfig.from_path(CONFIG).projects.default.checks.negative_data_rejection.expected_statuses
    assert str(r.status_code) in expected and "413" in expected
    items = spec["requestBody"]["content"]["multipart/form-data"]["schema"]
    ref = items.get("$ref", "").rsplit("/", 1)[-1]
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    images = (schemas[ref] if ref else items)["properties"]["images"]
    assert images["maxItems"] == limit and "minLength" not in images["items"]  # an empty file: its own error entry
    one_empty = client.post("/v1/predict/batch", files=[("images", ("e.jpg", b"", "image/jpeg"))])
    assert one_empty.status_code == 200 and one_empty.json()["results"][0]["error"]["code"] == "empty_file"
