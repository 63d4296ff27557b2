"""The REST API and web page (FastAPI): ``create_app(predictor, cfg)``; ``serve`` runs it with uvicorn.

Endpoints: ``POST /v1/predict`` (one image + optional age/sex/site), ``POST /v1/predict/batch``,
``GET /v1/model``, ``GET /healthz``, ``GET /readyz``, ``GET /metrics`` (Prometheus), the page at ``/`` and the
OpenAPI docs at ``/docs``. Predictions without a heat-map go through the dynamic batcher
(:mod:`lesionlab.serving.batching`) and the one-pass-per-member fast path (:mod:`lesionlab.serving.fastpath`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import FastAPI, File, Form, Query, UploadFile
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from lesionlab.config import ConfigError
from lesionlab.config.serving import ServeConfig
from lesionlab.data.images import ImageReadError
from lesionlab.inference.quality import NotAssessableError
from lesionlab.serving.api_errors import (
    ApiError,
    BodySizeLimit,
    InferencePool,
    image_error,
    install_error_handlers,
)
from lesionlab.serving.api_info import NOTICE, model_info, version
from lesionlab.serving.api_models import BatchOut, ErrorResponse, HealthOut, ModelInfoOut, PredictionOut, ReadyOut
from lesionlab.serving.batching import DynamicBatcher
from lesionlab.serving.fastpath import CASCADE, FastPath
from lesionlab.serving.metadata import MAX_AGE, SITES, MetadataError, PatientMetadata
from lesionlab.serving.observability import CONTENT_TYPE, RequestMetrics, ServiceMetrics, configure_access_log
from lesionlab.serving.predictor import Prediction, Predictor
from lesionlab.serving.shift_monitor import ShiftMonitor

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).with_name("static")
ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": text} for status, text in {
        400: "empty or malformed upload", 413: "request or image too large (decompression bomb)",
        415: "not an image", 422: "truncated/corrupt image, invalid metadata, too many images in a batch, or "
        "not_assessable (blank, tiny, extreme aspect ratio, under/over-exposed or blurred image: the input quality "
        "gate), or tta=cascade for a model without a cascade rule", 503: "all workers busy"}.items()}
TTA_POLICIES = ("none", "flips", "d4", CASCADE)

Sex = Literal["female", "male", "unknown"]
Site = Literal[SITES]  # type: ignore[valid-type]


def omit_null(schema: dict[str, Any]) -> None:
    """An optional multipart field is omitted when unknown (a form has no null): document it without the null
    branch pydantic adds for ``X | None``, so the schema offers exactly what the API accepts."""
    branches = [b for b in schema.pop("anyOf", []) if b.get("type") != "null"]
    if len(branches) == 1:
        schema.update(branches[0])
    elif branches:
        schema["anyOf"] = branches


Tta = Literal[TTA_POLICIES]  # type: ignore[valid-type]


def _payload(p: Prediction) -> dict[str, Any]:
    return {**p.as_dict(), "notice": NOTICE}


@dataclass(frozen=True)
class _Service:
    """What the routes of one app share: the model, its fast path, the batcher and pool, metrics, the model facts."""

    predictor: Predictor
    cfg: ServeConfig
    fast: FastPath
    batcher: DynamicBatcher
    pool: InferencePool
    metrics: ServiceMetrics
    info: dict[str, Any]
    default_tta: str
    members: list[int] | None
    shift: ShiftMonitor | None  # the recent requests against the training lesions (GET /v1/shift)


def create_app(predictor: Predictor, cfg: ServeConfig | None = None) -> FastAPI:
    """The FastAPI application serving ``predictor``; no global state (two apps can serve two models)."""
    service = _build_service(predictor, cfg or ServeConfig())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        app.state.ready = False  # shutting down: the readiness probe takes the instance out of rotation

    app = FastAPI(title="LesionLab diagnostic support API", version=version(), lifespan=lifespan,
                  description=f"Skin-lesion classification with triage priority and an unsure flag. {NOTICE}")
    app.add_middleware(BodySizeLimit, max_bytes=int(service.cfg.max_request_mb * 2**20))
    app.add_middleware(RequestMetrics, metrics=service.metrics, access_log=service.cfg.access_log == "json")
    install_error_handlers(app, on_error=service.metrics.refused)
    app.state.predictor, app.state.pool, app.state.config = predictor, service.pool, service.cfg
    app.state.batcher, app.state.metrics, app.state.ready = service.batcher, service.metrics, True
    service.metrics.ready.set_function(lambda: float(app.state.ready))
    _add_service_routes(app, service)
    _add_predict_routes(app, service)

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


def _build_service(predictor: Predictor, cfg: ServeConfig) -> _Service:
    """The fast path, the dynamic batcher, the heat-map pool, the metrics and the model facts of one app."""
    predictor.max_pixels = cfg.max_pixels
    fast = FastPath(predictor, threads=cfg.threads_per_worker, fused=cfg.engine == "fast")
    default_tta = serving_default(fast, cfg.tta, cfg.member_indices)
    members = cfg.member_indices
    if members is not None and (cfg.engine != "fast" or not all(0 <= i < fast.n_members for i in members)):
        raise ConfigError(f"serve.members={cfg.members!r}: the model has {fast.n_members} member(s) (indices 0.."
                          f"{fast.n_members - 1}), and a subset needs --engine fast")
    metrics = ServiceMetrics({"name": predictor.card.name if predictor.card else "model", "backend": fast.backend,
                              "lesionlab": version(), "default_tta": default_tta})
    pool = InferencePool(cfg.workers, cfg.queue_timeout_s)  # heat-map requests (PyTorch gradients, unbatched)

    chosen = members if members is not None else list(range(fast.n_members))
    shift = (ShiftMonitor.for_model(fast.members[chosen[0]].detector, predictor.prep.class_names,
                                    predictor.card.model_card if predictor.card else None, window=cfg.shift_window)
             if not fast.general and cfg.shift_window > 0 else None)

    def run_batch(tta: str, items: list[tuple[np.ndarray, str, PatientMetadata | None, int]]) -> list[Prediction]:
        batch = np.stack([array for array, _, _, _ in items])
        meta = [m for _, _, m, _ in items]
        features: list[np.ndarray] = []
        escalated: list[int] = []
        probs, ood = fast.predict(batch, tta, members, metadata=[m.as_dict() if m else None for m in meta],
                                  features_out=features if shift is not None else None, escalated_out=escalated)
        if escalated:
            metrics.escalated.inc(escalated[0])
        if shift is not None and features:
            shift.observe(features[0], probs, None if ood is None else ood.ood)
        return [predictor.assemble(name, probs[i], topk, m, ood, i) for i, (_, name, m, topk) in enumerate(items)]

    batcher = DynamicBatcher(run_batch, max_size=cfg.batch_size, max_wait_s=cfg.batch_wait_ms / 1e3,
                             workers=cfg.workers, timeout_s=cfg.queue_timeout_s, metrics=metrics)
    info = model_info(predictor, cfg, {
        "engine": cfg.engine, "backend": fast.backend,
        "members": len(members) if members is not None else fast.n_members,
        "member_indices": members if members is not None else list(range(fast.n_members)), "tta_default": default_tta,
        "tta_choices": [t for t in TTA_POLICIES if t != CASCADE or fast.cascade is not None],
        "cascade": fast.cascade.as_dict() if fast.cascade is not None else None,
        "batching": {"max_batch_size": cfg.batch_size, "max_wait_ms": cfg.batch_wait_ms},
        "workers": cfg.workers, "threads_per_worker": cfg.threads_per_worker,
        "heatmap_requests": f"{predictor.backend}, unbatched, the model's TTA ({predictor.prep.tta})"})
    return _Service(predictor, cfg, fast, batcher, pool, metrics, info, default_tta, members, shift)


def _add_service_routes(app: FastAPI, service: _Service) -> None:
    """``/healthz``, ``/readyz``, ``/metrics`` and ``/v1/model``."""
    info, pool, batcher = service.info, service.pool, service.batcher

    @app.get("/healthz", response_model=HealthOut, tags=["service"])
    async def healthz() -> dict[str, Any]:
        """Liveness: the process answers and a model is loaded; how busy the inference workers are."""
        return {"status": "ok", "model": info["name"], "running": pool.running + batcher.running,
                "waiting": pool.waiting + batcher.waiting}

    @app.get("/readyz", response_model=ReadyOut, responses={503: {"model": ErrorResponse,
                                                                  "description": "not ready (shutting down)"}},
             tags=["service"])
    async def readyz() -> dict[str, Any]:
        """Readiness: the model is loaded and predictions are taken (503 while starting or shutting down)."""
        if not app.state.ready:
            raise ApiError(503, "not_ready", "the service is not taking predictions (starting or shutting down)")
        return {"status": "ready", "model": info["name"], "backend": service.fast.backend}

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics() -> Response:
        """Prometheus text format: requests and latency by route and status, batching, refusals, class mix."""
        return Response(service.metrics.render(), media_type=CONTENT_TYPE)

    @app.get("/v1/shift", tags=["service"], responses={404: {"model": ErrorResponse,
                                                             "description": "this model has no reference to compare"}})
    async def get_shift() -> dict[str, Any]:
        """Shift before labels: the last answered images against the training lesions (a two-sample MMD test on the
        model's features with its permutation p-value, once 30 images are in), their predicted class mix against
        the test split's, and their OOD-flag rate."""
        if service.shift is None:
            raise ApiError(404, "no_shift_reference", "this model carries no kNN bank of training features to compare "
                           "recent images with (and the general engine keeps no features); see `lesionlab shift`")
        return await run_in_threadpool(service.shift.summary)

    @app.get("/v1/model", response_model=ModelInfoOut, tags=["service"])
    async def get_model() -> dict[str, Any]:
        """Classes, version, input size, calibration per member, unsure rule, the triage operating point and the
        test metrics, the training data's licence, the inference settings."""
        return info


async def _read_upload(upload: UploadFile) -> bytes:
    data = await upload.read()
    if not data:
        raise ApiError(400, "empty_file", f"{upload.filename or 'image'}: the uploaded file is empty (0 bytes)")
    return data


def _add_predict_routes(app: FastAPI, service: _Service) -> None:
    """``/v1/predict`` (one image) and ``/v1/predict/batch``."""
    predictor, cfg, metrics, batcher = service.predictor, service.cfg, service.metrics, service.batcher
    default_tta = service.default_tta

    def infer(data: list[bytes], names: list[str], meta: list[PatientMetadata | None], heatmap: bool,
              topk: int) -> list[Prediction]:
        return predictor.predict(data, topk=topk, names=names, metadata=meta, heatmap=heatmap)

    # per-request test-time augmentation (a default, not an annotation, so its description can name this app's default)
    tta_query = Query(None, description=f"test-time augmentation: none (fastest), flips (4 views), d4 (8 views) or "
                      f"cascade (none, then d4 only where the answer is fragile; models that store a cascade rule, "
                      f"see GET /v1/model); default {default_tta}", json_schema_extra=omit_null)

    @app.post("/v1/predict", response_model=PredictionOut, responses=ERRORS, tags=["predict"])
    async def predict(
        image: Annotated[UploadFile, File(description="dermatoscopic image (JPEG, PNG, TIFF, ...)",
                                          json_schema_extra={"minLength": 1})],
        age: Annotated[float | None, Form(ge=0, le=MAX_AGE, description="age in years",
                                          json_schema_extra=omit_null)] = None,
        sex: Annotated[Sex | None, Form(json_schema_extra=omit_null)] = None,
        site: Annotated[Site | None, Form(description="anatomical site", json_schema_extra=omit_null)] = None,
        heatmap: Annotated[bool, Query(description="include a heat-map overlay (PyTorch backend)")] = False,
        topk: Annotated[int, Query(ge=1, le=50)] = cfg.topk,
        tta: Tta | None = tta_query,
    ) -> dict[str, Any]:
        """Top-k diagnoses with calibrated probabilities, triage priority (+ rule), unsure flag, heat-map."""
        meta = PatientMetadata.parse(age, sex, site)
        data = await _read_upload(image)
        name = image.filename or "image"
        if heatmap:
            (result,) = await service.pool.run(infer, [data], [name], [meta], heatmap, topk)
        else:
            _check_tta(service, tta)
            array = await run_in_threadpool(predictor.preprocess, data, name)
            result = await batcher.submit(tta or default_tta, (array, name, meta, topk))
        metrics.observe_predictions([result])
        return _payload(result)

    # the schema states the batch limits exactly: 1..max_batch files (a default, not an annotation, so it can use
    # this app's config); an empty file is allowed and answered in its own entry (empty_file), like an unreadable one
    batch_field = File(description="images (at most limits.max_batch, see GET /v1/model); an empty or unreadable "
                       "file gets its own error entry", json_schema_extra={
                           "minItems": 1, "maxItems": cfg.max_batch, "items": {"type": "string", "format": "binary"}})

    @app.post("/v1/predict/batch", response_model=BatchOut, responses=ERRORS, tags=["predict"])
    async def predict_batch(
        images: list[UploadFile] = batch_field,
        metadata: Annotated[str | None, Form(description='JSON list, one {"age", "sex", "site"} object (or null) '
                                             "per image", json_schema_extra=omit_null)] = None,
        topk: Annotated[int, Query(ge=1, le=50)] = cfg.topk,
        tta: Tta | None = tta_query,
    ) -> dict[str, Any]:
        """Several images in one request; an unreadable image gets its own error entry, the others still run."""
        if len(images) > cfg.max_batch:  # the schema's maxItems: a validation error like any other (422)
            raise ApiError(422, "too_many_images", f"{len(images)} images in one request; the limit is "
                           f"{cfg.max_batch} (limits.max_batch in GET /v1/model)")
        meta = _batch_metadata(metadata, len(images))
        _check_tta(service, tta)
        results: list[dict[str, Any] | None] = [None] * len(images)
        good: list[int] = []
        blobs: list[bytes] = []
        for i, upload in enumerate(images):
            try:
                blobs.append(await _read_upload(upload))
                good.append(i)
            except ApiError as exc:
                metrics.refused(exc.code)
                results[i] = {"filename": upload.filename or f"image-{i}",
                              "error": {"code": exc.code, "message": exc.message}}
        names = [images[i].filename or f"image-{i}" for i in good]
        decoded = await run_in_threadpool(_decode_each, predictor, blobs, names)
        items = [(d, name, meta[i], topk) for i, name, d in zip(good, names, decoded, strict=True)
                 if isinstance(d, np.ndarray)]
        predictions = iter(await batcher.submit_many(tta or default_tta, items) if items else [])
        for i, name, d in zip(good, names, decoded, strict=True):
            if isinstance(d, np.ndarray):
                p = next(predictions)
                metrics.observe_predictions([p])
                results[i] = {"filename": name, "prediction": _payload(p)}
            else:
                metrics.refused(d["code"])
                results[i] = {"filename": name, "error": d}
        return {"results": results, "notice": NOTICE}


def serving_default(fast: FastPath, tta: str, members: list[int] | None = None) -> str:
    """The policy a request gets when it names none: ``model`` means the model's cascade rule when it stores one,
    the fast engine runs it and all members are served (the rule was fitted on all of them), otherwise its own TTA
    policy."""
    if tta == "model":
        whole = members is None or sorted(members) == list(range(fast.n_members))
        return CASCADE if fast.cascade is not None and whole else fast.prep.tta
    if tta == CASCADE:
        fast.require_cascade()
    return tta


def _check_tta(service: _Service, tta: str | None) -> None:
    """A request's ``tta=cascade`` the served model cannot run: 422 ``no_cascade`` with the fast path's reason."""
    if tta == CASCADE:
        try:
            service.fast.require_cascade()
        except ConfigError as exc:
            raise ApiError(422, "no_cascade", f"tta=cascade: {exc}") from None


def _decode_each(predictor: Predictor, blobs: list[bytes], names: list[str]) -> list[np.ndarray | dict[str, str]]:
    """Each image decoded, gated and cropped on its own (one bad file does not sink the batch): the model input,
    or its error entry."""
    out: list[np.ndarray | dict[str, str]] = []
    for blob, name in zip(blobs, names, strict=True):
        try:
            out.append(predictor.preprocess(blob, name))
        except ImageReadError as exc:
            err = image_error(exc)
            out.append({"code": err.code, "message": err.message})
        except NotAssessableError as exc:
            out.append({"code": "not_assessable", "message": str(exc)})
    return out


def _batch_metadata(text: str | None, n: int) -> list[PatientMetadata | None]:
    if text is None or not text.strip():
        return [None] * n
    try:
        items = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MetadataError("metadata", f"must be a JSON list of objects: {exc.msg}") from None
    if not isinstance(items, list) or len(items) != n:
        raise MetadataError("metadata", f"must be a JSON list with one entry per image ({n})")
    if any(m is not None and not isinstance(m, dict) for m in items):
        raise MetadataError("metadata", 'each entry must be an object like {"age": 40, "sex": "female"} or null')
    return [None if m is None else PatientMetadata.from_mapping(m) for m in items]


def serve(predictor: Predictor, cfg: ServeConfig, log_level: str = "info") -> None:
    """Run the app with uvicorn until interrupted. PyTorch gets ``cfg.threads_per_worker`` threads (its default of
    all cores per call oversubscribes the machine under load); ONNX Runtime sessions get the same in ``FastPath``."""
    import torch
    import uvicorn

    torch.set_num_threads(cfg.threads_per_worker)
    configure_access_log(cfg.access_log)
    uvicorn.run(create_app(predictor, cfg), host=cfg.host, port=cfg.port, log_level=log_level,
                access_log=cfg.access_log == "text", limit_concurrency=max(64, 8 * cfg.workers),
                timeout_keep_alive=5)
