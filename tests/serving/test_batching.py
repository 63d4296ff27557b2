"""Dynamic batching and the one-pass-per-member fast path: concurrent requests share a model call, the numbers equal
the predictor's general path, busy workers answer 503."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from lesionlab.serving.api_errors import ApiError
from lesionlab.serving.batching import DynamicBatcher

pytestmark = pytest.mark.slow


def recorder(delay: float = 0.0) -> tuple[list[tuple[str, list[int]]], object]:
    calls: list[tuple[str, list[int]]] = []

    def run(key: str, items: list[int]) -> list[int]:
        calls.append((key, list(items)))
        time.sleep(delay)
        return [2 * i for i in items]

    return calls, run


@pytest.mark.parametrize(("max_size", "n", "sizes"), [(32, 8, [8]), (4, 10, [4, 4, 2]), (1, 3, [1, 1, 1])])
def test_concurrent_jobs_share_batches_up_to_the_limit(max_size: int, n: int, sizes: list[int]) -> None:
    calls, run = recorder()

    async def scenario() -> list[int]:
        batcher = DynamicBatcher(run, max_size=max_size, max_wait_s=0.2, workers=1)
        return list(await asyncio.gather(*(batcher.submit("d4", i) for i in range(n))))

    assert asyncio.run(scenario()) == [2 * i for i in range(n)]  # each caller gets its own result
    assert [len(items) for _, items in calls] == sizes


def test_keys_never_share_a_batch() -> None:
    calls, run = recorder()

    async def scenario() -> None:
        batcher = DynamicBatcher(run, max_size=32, max_wait_s=0.1, workers=1)
        await asyncio.gather(*(batcher.submit("none" if i % 2 else "d4", i) for i in range(6)))

    asyncio.run(scenario())
    assert sorted((key, sorted(items)) for key, items in calls) == [("d4", [0, 2, 4]), ("none", [1, 3, 5])]


def test_a_failing_batch_fails_each_of_its_jobs_and_the_worker_goes_on() -> None:
    def run(key: str, items: list[int]) -> list[int]:
        if 13 in items:
            raise RuntimeError("model failure")
        return items

    async def scenario() -> tuple[list, int]:
        batcher = DynamicBatcher(run, max_size=8, max_wait_s=0.1, workers=1)
        failed = await asyncio.gather(batcher.submit("k", 13), batcher.submit("k", 1), return_exceptions=True)
        return failed, await batcher.submit("k", 7)

    failed, later = asyncio.run(scenario())
    assert all(isinstance(e, RuntimeError) for e in failed) and later == 7


def test_jobs_that_waited_past_the_timeout_get_503() -> None:
    calls, run = recorder(delay=0.3)

    async def scenario() -> list:
        batcher = DynamicBatcher(run, max_size=1, max_wait_s=0, workers=1, timeout_s=0.05)
        return await asyncio.gather(*(batcher.submit("k", i) for i in range(3)), return_exceptions=True)

    first, *late = asyncio.run(scenario())
    assert first == 0
    assert all(isinstance(e, ApiError) and (e.status, e.code) == (503, "busy") for e in late)
    assert len(calls) == 1  # the late jobs never ran


@pytest.fixture(scope="module")
def ensemble_predictor(serving_run: Path):
    from lesionlab.serving.predictor import Predictor

    return Predictor.load([serving_run, serving_run])


@pytest.mark.parametrize("kind", ["single", "ensemble"])
@pytest.mark.parametrize("tta", ["none", "flips", "d4"])
def test_fast_path_equals_the_general_path(kind: str, tta: str, predictor, ensemble_predictor,
                                           unseen_images: list[Path]) -> None:
    from dataclasses import replace

    from lesionlab.serving.fastpath import FastPath

    p = predictor if kind == "single" else ensemble_predictor
    batch = np.stack([p.preprocess(path) for path in unseen_images[:6]])
    saved = p.prep
    p.prep = replace(saved, tta=tta)  # the general path reads the TTA policy from the preprocessing
    try:
        reference, ood = p.predict_arrays(batch), p.ood_scores(batch)
    finally:
        p.prep = saved
    probs, fast_ood = FastPath(p).predict(batch, tta)
    assert np.allclose(probs, reference, atol=1e-5)
    assert (ood is None) == (fast_ood is None)
    if ood is not None:
        assert np.allclose(fast_ood.score, ood.score, atol=1e-5) and (fast_ood.ood == ood.ood).all()


def test_fast_path_member_subset(ensemble_predictor, unseen_images: list[Path]) -> None:
    from lesionlab.serving.fastpath import FastPath

    fast = FastPath(ensemble_predictor)
    batch = np.stack([ensemble_predictor.preprocess(path) for path in unseen_images[:3]])
    both, _ = fast.predict(batch, "none")
    first, _ = fast.predict(batch, "none", members=[0])
    assert fast.n_members == 2 and np.allclose(both, first, atol=1e-5)  # the same run twice


def test_fast_path_uses_onnx_beside_the_checkpoint(tmp_path: Path, serving_run: Path,
                                                   unseen_images: list[Path]) -> None:
    import shutil

    from lesionlab.serving.export import export_run
    from lesionlab.serving.fastpath import FastPath
    from lesionlab.serving.predictor import Predictor

    run = tmp_path / "run"
    shutil.copytree(serving_run, run)
    export_run(run, None)
    p = Predictor.load(run)
    fast = FastPath(p)
    assert p.backend == "torch" and fast.backend == "onnx"
    batch = np.stack([p.preprocess(path) for path in unseen_images[:4]])
    assert np.allclose(fast.predict(batch, p.prep.tta)[0], p.predict_arrays(batch), atol=1e-4)


def test_server_gathers_concurrent_requests_into_one_batch(predictor, unseen_images: list[Path]) -> None:
    from lesionlab.config.serving import ServeConfig
    from lesionlab.serving.api import create_app
    from lesionlab.serving.server import BackgroundServer

    app = create_app(predictor, ServeConfig(batch_size=16, batch_wait_ms=300, workers=1))
    images = [p.read_bytes() for p in unseen_images[:6]]

    async def post_all(url: str) -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=60) as client:
            return await asyncio.gather(*(client.post(f"{url}/v1/predict",
                                                      files={"image": (f"{i}.jpg", b, "image/jpeg")})
                                          for i, b in enumerate(images)))

    with BackgroundServer(app) as url:
        responses = asyncio.run(post_all(url))
        text = httpx.get(f"{url}/metrics").text
    assert [r.status_code for r in responses] == [200] * 6
    count = float(next(line.split()[-1] for line in text.splitlines()
                       if line.startswith("lesionlab_inference_batch_size_count")))
    assert count < 6  # at least two requests shared a forward pass
    expected = predictor.predict(images, names=[f"{i}.jpg" for i in range(6)])
    for r, e in zip(responses, expected, strict=True):
        assert r.json()["label"] == e.label
        assert np.allclose(list(r.json()["probabilities"].values()), list(e.probabilities.values()), atol=1e-5)


def test_request_chooses_tta(app, predictor, jpeg_bytes: bytes) -> None:
    from fastapi.testclient import TestClient

    from lesionlab.serving.fastpath import FastPath

    client = TestClient(app)
    batch = predictor.preprocess(jpeg_bytes, "x.jpg")[None]
    for tta in ("none", "flips", "d4"):
        r = client.post(f"/v1/predict?tta={tta}", files={"image": ("x.jpg", jpeg_bytes, "image/jpeg")})
        assert r.status_code == 200, r.text
        expected = FastPath(predictor).predict(batch, tta)[0][0]
        assert np.allclose(list(r.json()["probabilities"].values()), expected, atol=1e-5)
    r = client.post("/v1/predict?tta=flip", files={"image": ("x.jpg", jpeg_bytes, "image/jpeg")})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"
    assert client.get("/v1/model").json()["inference"]["tta_choices"] == ["none", "flips", "d4"]


def test_members_knob(ensemble_predictor, jpeg_bytes: bytes) -> None:
    from fastapi.testclient import TestClient

    from lesionlab.config import ConfigError
    from lesionlab.config.serving import ServeConfig
    from lesionlab.serving.api import create_app

    client = TestClient(create_app(ensemble_predictor, ServeConfig(members="1")))
    inference = client.get("/v1/model").json()["inference"]
    assert inference["members"] == 1 and inference["member_indices"] == [1]
    assert client.post("/v1/predict", files={"image": ("x.jpg", jpeg_bytes, "image/jpeg")}).status_code == 200
    with pytest.raises(ConfigError, match=r"serve\.members"):
        create_app(ensemble_predictor, ServeConfig(members="2"))
    with pytest.raises(ConfigError, match=r"serve\.members"):
        ServeConfig(members="first")
