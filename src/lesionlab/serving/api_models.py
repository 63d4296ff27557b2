"""Response schemas of the REST API (they also document it in the OpenAPI spec at ``/docs``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ErrorBody(BaseModel):
    code: str = Field(description="machine-readable error code, e.g. truncated_image, invalid_metadata")
    message: str = Field(description="what went wrong and what to do about it")


class ErrorResponse(BaseModel):
    error: ErrorBody


class DiagnosisOut(BaseModel):
    label: str
    description: str
    probability: float


class HeatmapOut(BaseModel):
    method: str
    note: str | None = None
    class_: str | None = Field(default=None, alias="class")
    image: str | None = Field(default=None, description="the cropped model input as a PNG data URL")
    overlay: str | None = Field(default=None, description="RGBA heat-map PNG data URL, same size as image")

    model_config = {"populate_by_name": True}


class PredictionOut(BaseModel):
    image: str
    label: str
    triage_priority: int | None = Field(description="1 = malignant (refer), 2 = AK / nevus (monitor), 3 = benign; "
                                        "null = not assessable (out of distribution): no priority is given")
    triage_rule: str
    triage_reason: str
    unsure: bool | None = Field(description="low confidence / possibly out of distribution; null when the model "
                                "stores no threshold")
    unsure_reason: str
    top: list[DiagnosisOut]
    probabilities: dict[str, float]
    metadata: dict[str, Any]
    heatmap: HeatmapOut | None = None
    seen_in_training: bool | None = Field(default=None, description="the model trained or validated on this image "
                                          "(by image id = file name, or by lesion id): its prediction says nothing "
                                          "about accuracy; null when the model has no record of its training images")
    seen_reason: str = ""
    ood: bool | None = Field(default=None, description="out of distribution (unlike the training lesions); null when "
                             "the model stores no OOD detector")
    ood_score: float | None = Field(default=None, description="the detector's score (higher = more unusual)")
    ood_reason: str = ""
    notice: str


class BatchItemOut(BaseModel):
    filename: str
    prediction: PredictionOut | None = None
    error: ErrorBody | None = None


class BatchOut(BaseModel):
    results: list[BatchItemOut]
    notice: str


class HealthOut(BaseModel):
    status: str
    model: str
    running: int = Field(description="inferences running now")
    waiting: int = Field(description="requests waiting for an inference worker")


class ReadyOut(BaseModel):
    status: str
    model: str
    backend: str = Field(description="what runs the batched predictions (onnx, torch, ensemble)")


class ModelInfoOut(BaseModel):
    name: str
    version: dict[str, str]
    backend: str
    classes: list[dict[str, Any]]
    input: dict[str, Any]
    calibration: dict[str, Any]
    unsure: dict[str, Any]
    ood: dict[str, Any]
    quality_gate: dict[str, Any]
    triage: dict[str, Any]
    heatmap: str | None
    metrics: dict[str, Any] | None
    model_card: dict[str, Any] | None = Field(default=None, description="a released model's card: data, licence, "
                                              "figures with 95% CIs, intended use, limitations")
    training_data: dict[str, Any]
    metadata_fields: dict[str, Any]
    limits: dict[str, Any]
    inference: dict[str, Any] | None = Field(default=None, description="how predictions run: backend, members, "
                                             "default and allowed test-time augmentation, dynamic batching")
    notice: str
