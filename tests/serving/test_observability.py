"""Operations: Prometheus metrics scraped from the live server after real requests, /readyz, the JSON access log."""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from lesionlab.serving.observability import ACCESS_LOGGER, ServiceMetrics
from tests.serving.conftest import encode

pytestmark = pytest.mark.slow


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``/metrics`` as {(sample name, sorted labels): value}."""
    r = httpx.get(f"{url}/metrics", timeout=10)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(r.text) for s in family.samples}


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_move_after_real_requests(live_url: str, jpeg_bytes: bytes) -> None:
    before = scrape(live_url)
    files = {"image": ("lesion.jpg", jpeg_bytes, "image/jpeg")}
    for _ in range(2):
        assert httpx.post(f"{live_url}/v1/predict", files=files, timeout=60).status_code == 200
    blank = encode(Image.new("RGB", (64, 64), (128, 128, 128)))
    r = httpx.post(f"{live_url}/v1/predict", files={"image": ("blank.png", blank, "image/png")}, timeout=60)
    assert r.status_code == 422 and r.json()["error"]["code"] == "not_assessable"
    assert httpx.get(f"{live_url}/no/such/route", timeout=10).status_code == 404
    after = scrape(live_url)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    ok = {"method": "POST", "route": "/v1/predict", "status": "200"}
    assert moved("lesionlab_http_requests_total", **ok) == 2
    assert moved("lesionlab_http_request_duration_seconds_count", **ok) == 2
    assert moved("lesionlab_http_request_duration_seconds_sum", **ok) > 0
    assert moved("lesionlab_http_requests_total", method="POST", route="/v1/predict", status="422") == 1
    assert moved("lesionlab_http_requests_total", method="GET", route="unmatched", status="404") == 1
    assert moved("lesionlab_not_assessable_total") == 1
    assert moved("lesionlab_refusals_total", code="not_assessable") == 1
    assert moved("lesionlab_inference_batch_size_sum") == 2  # two images went through the batcher
    assert moved("lesionlab_inference_queue_wait_seconds_count") == 2
    assert sum(v for (n, _), v in after.items() if n == "lesionlab_predictions_total") - \
        sum(v for (n, _), v in before.items() if n == "lesionlab_predictions_total") == 2
    assert sum(moved("lesionlab_triage_priority_total", priority=p) for p in ("1", "2", "3", "none")) == 2
    assert value(after, "lesionlab_ready") == 1
    assert any(n == "lesionlab_model_info" for n, _ in after)


def test_ood_and_priority_counters() -> None:
    metrics = ServiceMetrics()
    preds = [SimpleNamespace(label="mel", triage_priority=1, ood=False),
             SimpleNamespace(label="nv", triage_priority=None, ood=True)]
    metrics.observe_predictions(preds)
    text = metrics.render().decode()
    assert 'lesionlab_triage_priority_total{priority="1"} 1.0' in text
    assert 'lesionlab_triage_priority_total{priority="none"} 1.0' in text
    assert "lesionlab_ood_total 1.0" in text and 'lesionlab_predictions_total{label="mel"} 1.0' in text


def test_two_apps_keep_separate_counts(predictor) -> None:
    from lesionlab.serving.api import create_app

    a, b = TestClient(create_app(predictor)), TestClient(create_app(predictor))
    a.get("/healthz")
    assert 'route="/healthz"' in a.get("/metrics").text
    assert 'route="/healthz"' not in b.get("/metrics").text


def test_readyz(app) -> None:
    client = TestClient(app)
    r = client.get("/readyz")
    assert r.status_code == 200 and r.json()["status"] == "ready"
    app.state.ready = False
    try:
        r = client.get("/readyz")
        assert r.status_code == 503 and r.json()["error"]["code"] == "not_ready"
        assert "lesionlab_ready 0.0" in client.get("/metrics").text
    finally:
        app.state.ready = True
    assert client.get("/healthz").status_code == 200  # liveness is not readiness


def test_json_access_log(predictor, jpeg_bytes: bytes, caplog: pytest.LogCaptureFixture) -> None:
    from lesionlab.config.serving import ServeConfig
    from lesionlab.serving.api import create_app

    client = TestClient(create_app(predictor, ServeConfig(access_log="json")))
    with caplog.at_level(logging.INFO, logger=ACCESS_LOGGER):
        client.post("/v1/predict?topk=2", files={"image": ("x.jpg", jpeg_bytes, "image/jpeg")})
        client.get("/v1/nothing")
    records = [json.loads(r.getMessage()) for r in caplog.records if r.name == ACCESS_LOGGER]
    assert [(r["route"], r["status"]) for r in records] == [("/v1/predict", 200), ("unmatched", 404)]
    assert records[0]["method"] == "POST" and records[0]["query"] == "topk=2" and records[0]["duration_ms"] > 0
    caplog.clear()
    quiet = TestClient(create_app(predictor))  # the default (text) leaves access logging to uvicorn
    with caplog.at_level(logging.INFO, logger=ACCESS_LOGGER):
        quiet.get("/healthz")
    assert not [r for r in caplog.records if r.name == ACCESS_LOGGER]


def test_serve_help_explains_the_knobs(capsys: pytest.CaptureFixture[str]) -> None:
    from lesionlab.cli import main

    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for flag in ("--batch-size", "--batch-wait-ms", "--threads", "--workers", "--tta", "--access-log"):
        assert flag in out
    assert "dynamic batching" in out and "ONNX Runtime" in out


def test_metrics_is_not_in_the_api_schema(app) -> None:
    paths = TestClient(app).get("/openapi.json").json()["paths"]
    assert "/readyz" in paths and "/metrics" not in paths
