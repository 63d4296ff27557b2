"""The REST API in-process (FastAPI TestClient): endpoints, JSON shapes, limits, structured errors, the page."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from lesionlab.cli import main
from lesionlab.serving.api_errors import ApiError, InferencePool

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client(app) -> TestClient:
    return TestClient(app)


def test_health_and_model_info(client: TestClient, serving_run: Path) -> None:
    assert client.get("/healthz").json() == {"status": "ok", "model": serving_run.name, "running": 0, "waiting": 0}
    info = client.get("/v1/model").json()
    assert [c["code"] for c in info["classes"]] == ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]
    assert {c["code"]: c["triage_priority"] for c in info["classes"]}["mel"] == 1
    assert info["input"]["image_size"] == 32 and info["version"]["lesionlab"]
    assert len(info["version"]["model_sha256"]) == 12
    metrics = json.loads((serving_run / "metrics.json").read_text())
    assert info["metrics"]["balanced_accuracy"] == pytest.approx(metrics["balanced_accuracy"])
    assert info["training_data"]["licence"] == "CC BY-NC 4.0"
    assert info["unsure"]["available"] and "validation" in info["unsure"]["rule"]
    assert "not a diagnosis" in info["notice"]


def test_predict_with_metadata_and_heatmap(client: TestClient, jpeg_bytes: bytes) -> None:
    r = client.post("/v1/predict?heatmap=true&topk=2", files={"image": ("lesion.jpg", jpeg_bytes, "image/jpeg")},
                    data={"age": "45", "sex": "female", "site": "back"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["image"] == "lesion.jpg" and len(body["top"]) == 2
    assert body["metadata"] == {"age": 45.0, "sex": "female", "site": "back"}
    assert body["heatmap"]["overlay"].startswith("data:image/png;base64,")
    assert isinstance(body["unsure"], bool) and body["triage_reason"] and "not a diagnosis" in body["notice"]


def test_batch_reports_bad_items_separately(client: TestClient, jpeg_bytes: bytes) -> None:
    files = [("images", ("a.jpg", jpeg_bytes, "image/jpeg")), ("images", ("b.txt", b"plain text", "text/plain")),
             ("images", ("c.jpg", b"", "image/jpeg"))]
    r = client.post("/v1/predict/batch", files=files, data={"metadata": json.dumps([{"age": 30}, None, None])})
    assert r.status_code == 200, r.text
    a, b, c = r.json()["results"]
    assert a["prediction"]["metadata"] == {"age": 30.0}
    assert b["error"]["code"] == "unsupported_image" and c["error"]["code"] == "empty_file"
    too_many = client.post("/v1/predict/batch", files=[("images", (f"{i}.jpg", jpeg_bytes, "image/jpeg"))
                                                       for i in range(5)])
    assert too_many.status_code == 422 and too_many.json()["error"]["code"] == "too_many_images"
    bad_meta = client.post("/v1/predict/batch", files=files[:1], data={"metadata": '[{"sex": "x"}]'})
    assert bad_meta.status_code == 422 and bad_meta.json()["error"]["code"] == "invalid_metadata"


def test_request_size_limit(client: TestClient) -> None:
    big = b"\xff\xd8" + b"\0" * (3 * 2**20)
    r = client.post("/v1/predict", files={"image": ("big.jpg", big, "image/jpeg")})
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
    assert "2 MiB" in r.json()["error"]["message"]


def test_unknown_route_and_method_are_json(client: TestClient) -> None:
    assert client.get("/v1/nothing").json()["error"]["code"] == "not_found"
    r = client.get("/v1/predict")
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"


def test_page_and_docs(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "Decision support, not a diagnosis" in page.text
    assert client.get("/static/app.js").status_code == 200
    spec = client.get("/openapi.json").json()
    assert {"/v1/predict", "/v1/predict/batch", "/v1/model", "/healthz"} <= set(spec["paths"])
    assert client.get("/docs").status_code == 200


def test_pool_bounds_concurrency_and_times_out() -> None:
    import time

    async def scenario() -> tuple[int, str]:
        pool = InferencePool(workers=1, timeout=0.05)
        slow = asyncio.create_task(pool.run(time.sleep, 0.5))
        await asyncio.sleep(0.05)
        try:
            await pool.run(time.sleep, 0)
        except ApiError as exc:
            await slow
            return exc.status, exc.code
        raise AssertionError("the second call should have waited and timed out")

    assert asyncio.run(scenario()) == (503, "busy")


def test_serve_cli_help_and_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as info:
        main(["serve", "--help"])
    assert info.value.code == 0 and "/v1/predict" in capsys.readouterr().out
    assert main(["serve", str(tmp_path / "missing")]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["serve", str(tmp_path), "--workers", "0"]) == 2
    assert "serve.workers" in capsys.readouterr().err
