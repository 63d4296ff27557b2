"""The REST API and web page (FastAPI): ``create_app(predictor, cfg)``; ``serve`` runs it with uvicorn.

Endpoints: ``POST /v1/predict`` (one image + optional age/sex/site), ``POST /v1/predict/batch``,
``GET /v1/model``, ``GET /healthz``, the page at ``/`` and the OpenAPI docs at ``/docs``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import FastAPI, File, Form, Query, UploadFile
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from lesionlab.data.images import ImageReadError
from lesionlab.data.taxonomy import triage_priority
from lesionlab.inference.ood import summary as ood_summary
from lesionlab.inference.quality import NotAssessableError
from lesionlab.serving.api_errors import (
    ApiError,
    BodySizeLimit,
    InferencePool,
    image_error,
    install_error_handlers,
)
from lesionlab.serving.api_models import BatchOut, ErrorResponse, HealthOut, ModelInfoOut, PredictionOut
from lesionlab.serving.config import ServeConfig
from lesionlab.serving.metadata import MAX_AGE, SEXES, SITES, MetadataError, PatientMetadata
from lesionlab.serving.predictor import Prediction, Predictor

logger = logging.getLogger(__name__)

NOTICE = ("Decision support, not a diagnosis: LesionLab is research software. A clinician must make every "
          "diagnostic and treatment decision.")
STATIC_DIR = Path(__file__).with_name("static")
ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": text} for status, text in {
        400: "empty or malformed upload", 413: "request or image too large (decompression bomb)",
        415: "not an image", 422: "truncated/corrupt image, invalid metadata, or not_assessable (blank, tiny, extreme "
        "aspect ratio, under/over-exposed or blurred image: the input quality gate)", 503: "all workers busy"}.items()}

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


def _version() -> str:
    try:
        return importlib_metadata.version("lesionlab")
    except importlib_metadata.PackageNotFoundError:  # pragma: no cover - source tree without install
        return "unknown"


def model_info(predictor: Predictor, cfg: ServeConfig) -> dict[str, Any]:
    """What ``GET /v1/model`` returns: classes, version, input, calibration, metrics, training-data licence."""
    card, prep = predictor.card, predictor.prep
    return {
        "name": card.name if card else "model",
        "version": {"lesionlab": _version(), "model_sha256": card.sha256 if card else "unknown"},
        "backend": predictor.backend,
        "classes": [{"code": c, "description": predictor.describe(c), "triage_priority": triage_priority(c)}
                    for c in predictor.class_names],
        "input": {"image_size": prep.image_size, "crop": prep.crop, "mean": list(prep.mean), "std": list(prep.std),
                  "tta": prep.tta, "taxonomy": prep.taxonomy},
        "calibration": {"temperature": prep.temperature,
                        "calibrated": prep.temperature != 1.0},
        "unsure": {"available": predictor.unsure_available, "threshold": prep.unsure_threshold,
                   "rule": predictor.unsure_rule},
        "ood": ood_summary(predictor.ood_detector),
        "quality_gate": asdict(predictor.quality),
        "triage": {"thresholds": dict(prep.thresholds),
                   "operating_point": _operating_point(card),
                   "rules": ["operating-threshold: a class reaching its stored threshold raises the priority",
                             "top-1: the priority of the most probable diagnosis"]},
        "heatmap": predictor.heatmap_method,
        "metrics": card.metrics if card else None,
        "model_card": getattr(card, "model_card", None) if card else None,
        "training_data": {"dataset": card.dataset if card else None, "licence": card.licence if card else None,
                          "citation": card.citation if card else None,
                          "seen_images_recorded": predictor.seen is not None,  # predictions mark seen_in_training
                          **({"details": card.training} if card and card.training else {})},
        "metadata_fields": {"age": {"min": 0, "max": MAX_AGE}, "sex": list(SEXES), "site": list(SITES),
                            "used_by_model": getattr(predictor.model, "metadata_spec", None) is not None},
        "limits": {"max_request_mb": cfg.max_request_mb, "max_pixels": cfg.max_pixels, "max_batch": cfg.max_batch,
                   "workers": cfg.workers},
        "notice": NOTICE,
    }


def _operating_point(card: Any) -> dict[str, Any] | None:
    """The triage operating point from the run's test metrics: 'priority-1 sensitivity ≥ X chosen on validation'
    with the test sensitivity/specificity and their 95 % CIs."""
    return (card.metrics or {}).get("triage_operating_point") if card else None


def _payload(p: Prediction) -> dict[str, Any]:
    return {**p.as_dict(), "notice": NOTICE}


def create_app(predictor: Predictor, cfg: ServeConfig | None = None) -> FastAPI:
    """The FastAPI application serving ``predictor``; no global state (two apps can serve two models)."""
    cfg = cfg or ServeConfig()
    predictor.max_pixels = cfg.max_pixels
    pool = InferencePool(cfg.workers, cfg.queue_timeout_s)
    info = model_info(predictor, cfg)
    app = FastAPI(title="LesionLab diagnostic support API", version=_version(),
                  description=f"Skin-lesion classification with triage priority and an unsure flag. {NOTICE}")
    app.add_middleware(BodySizeLimit, max_bytes=int(cfg.max_request_mb * 2**20))
    install_error_handlers(app)
    app.state.predictor, app.state.pool, app.state.config = predictor, pool, cfg

    def infer(data: list[bytes], names: list[str], meta: list[PatientMetadata | None], heatmap: bool,
              topk: int) -> list[Prediction]:
        return predictor.predict(data, topk=topk, names=names, metadata=meta, heatmap=heatmap)

    async def read_upload(upload: UploadFile) -> bytes:
        data = await upload.read()
        if not data:
            raise ApiError(400, "empty_file", f"{upload.filename or 'image'}: the uploaded file is empty (0 bytes)")
        return data

    @app.get("/healthz", response_model=HealthOut, tags=["service"])
    async def healthz() -> dict[str, Any]:
        """Liveness: the process answers and a model is loaded; how busy the inference workers are."""
        return {"status": "ok", "model": info["name"], "running": pool.running, "waiting": pool.waiting}

    @app.get("/v1/model", response_model=ModelInfoOut, tags=["service"])
    async def get_model() -> dict[str, Any]:
        """Classes, version, input size, calibration, unsure rule, test metrics and the training data's licence."""
        return info

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
    ) -> dict[str, Any]:
        """Top-k diagnoses with calibrated probabilities, triage priority (+ rule), unsure flag, heat-map."""
        meta = PatientMetadata.parse(age, sex, site)
        data = await read_upload(image)
        (result,) = await pool.run(infer, [data], [image.filename or "image"], [meta], heatmap, topk)
        return _payload(result)

    # the schema states the batch limits exactly: 1..max_batch non-empty files (a default, not an annotation, so it
    # can use this app's config)
    batch_field = File(description="images (at most limits.max_batch, see GET /v1/model)",
                       json_schema_extra={"minItems": 1, "maxItems": cfg.max_batch,
                                          "items": {"type": "string", "format": "binary", "minLength": 1}})

    @app.post("/v1/predict/batch", response_model=BatchOut, responses=ERRORS, tags=["predict"])
    async def predict_batch(
        images: list[UploadFile] = batch_field,
        metadata: Annotated[str | None, Form(description='JSON list, one {"age", "sex", "site"} object (or null) '
                                             "per image", json_schema_extra=omit_null)] = None,
        topk: Annotated[int, Query(ge=1, le=50)] = cfg.topk,
    ) -> dict[str, Any]:
        """Several images in one request; an unreadable image gets its own error entry, the others still run."""
        if len(images) > cfg.max_batch:
            raise ApiError(413, "too_many_images", f"{len(images)} images in one request; the limit is "
                           f"{cfg.max_batch}")
        meta = _batch_metadata(metadata, len(images))
        results: list[dict[str, Any] | None] = [None] * len(images)
        good: list[int] = []
        blobs: list[bytes] = []
        for i, upload in enumerate(images):
            try:
                blobs.append(await read_upload(upload))
                good.append(i)
            except ApiError as exc:
                results[i] = {"filename": upload.filename or f"image-{i}",
                              "error": {"code": exc.code, "message": exc.message}}
        names = [images[i].filename or f"image-{i}" for i in good]
        predictions = await pool.run(_predict_each, predictor, blobs, names, [meta[i] for i in good], topk)
        for i, item in zip(good, predictions, strict=True):
            results[i] = item
        return {"results": results, "notice": NOTICE}

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


def _predict_each(predictor: Predictor, blobs: list[bytes], names: list[str], meta: list[PatientMetadata | None],
                  topk: int) -> list[dict[str, Any]]:
    """Decode each image on its own (one bad file does not sink the batch), then predict the good ones together."""
    arrays, keep, out = [], [], []
    for i, (blob, name) in enumerate(zip(blobs, names, strict=True)):
        try:
            img = predictor.decode(blob, name)
            predictor.assess(img, name)  # the quality gate, per image
        except ImageReadError as exc:
            err = image_error(exc)
            out.append({"filename": name, "error": {"code": err.code, "message": err.message}})
            continue
        except NotAssessableError as exc:
            out.append({"filename": name, "error": {"code": "not_assessable", "message": str(exc)}})
            continue
        arrays.append(img)
        keep.append(i)
        out.append(None)
    preds = predictor.predict(arrays, topk=topk, names=[names[i] for i in keep], metadata=[meta[i] for i in keep])
    for i, p in zip(keep, preds, strict=True):
        out[i] = {"filename": names[i], "prediction": _payload(p)}
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
    """Run the app with uvicorn until interrupted. Each of the ``cfg.workers`` concurrent inferences gets an equal
    share of the CPU cores (PyTorch's default of all cores per call oversubscribes the machine under load)."""
    import os

    import torch
    import uvicorn

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // cfg.workers))

    uvicorn.run(create_app(predictor, cfg), host=cfg.host, port=cfg.port, log_level=log_level,
                limit_concurrency=max(64, 8 * cfg.workers), timeout_keep_alive=5)
