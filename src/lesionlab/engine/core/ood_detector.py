"""A run's OOD detector at training time: fitted on the training split's features, its threshold calibrated on the
validation split, and the share of test lesions it flags. ``lesionlab ood fit`` / ``ood eval`` are
:mod:`lesionlab.engine.ood`."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch import nn

from lesionlab.data.prepare import REFIT_COLUMN, PreparedData, original_split
from lesionlab.inference.ood import (
    DEFAULT_COVERAGE,
    DEFAULT_METHOD,
    OODDetector,
    extract_features,
    fit_ood_detector,
    score_images,
)
from lesionlab.models.checkpoint import Preprocessing
from lesionlab.reports.artifacts import json_safe

logger = logging.getLogger(__name__)

SUMMARY_FILE = "ood.json"


@dataclass(frozen=True)
class SplitFeatures:
    """Identity-view ``(features, logits)`` of one split and its labels."""

    features: np.ndarray
    logits: np.ndarray
    labels: np.ndarray


def split_features(model: nn.Module, data: PreparedData, prep: Preprocessing, split: str,
                   metadata: np.ndarray | None = None, batch_size: int = 256) -> SplitFeatures:
    idx = data.indices(split)
    f, z = extract_features(model, data.images, prep.mean, prep.std, indices=data.rows[idx], batch_size=batch_size,
                            metadata=None if metadata is None else metadata[idx])
    return SplitFeatures(f, z, data.targets()[idx])


def fit_run_detector(model: nn.Module, data: PreparedData, prep: Preprocessing, method: str = DEFAULT_METHOD,
                     coverage: float = DEFAULT_COVERAGE, metadata: np.ndarray | None = None,
                     batch_size: int = 256) -> OODDetector | None:
    """Fit ``method`` on the training split, threshold on validation; None (with a warning) without validation.

    A refit's data (:func:`~lesionlab.data.prepare.with_validation_in_training`) use their original split: the
    detector is fitted on the original training lesions and thresholded on the original validation lesions, which the
    refit also trained on, so it flags somewhat more new in-distribution images than ``coverage`` says."""
    if method == "none":
        return None
    refit = REFIT_COLUMN in data.table
    data = original_split(data)
    if len(data.indices("val")) < 2 or len(data.indices("train")) < 2:
        logger.warning("No validation split: the OOD detector is not fitted")
        return None
    tr = split_features(model, data, prep, "train", metadata, batch_size)
    va = split_features(model, data, prep, "val", metadata, batch_size)
    detector = fit_ood_detector(method, (tr.features, tr.logits, tr.labels), (va.features, va.logits), coverage)
    if refit:
        detector.rule += "; this refit also trained on those validation images, so new images exceed it more often"
    logger.info("OOD detector: %s", detector.rule)
    return detector


def write_ood_summary(directory: Path, model: nn.Module, data: PreparedData, prep: Preprocessing,
                      metadata: np.ndarray | None = None, *, score_test: bool = True) -> dict | None:
    """``ood.json``: the detector's rule and the share of the held-out test lesions it flags (``score_test=False``,
    for a validation-only run: the rule alone, the test split left unpredicted)."""
    detector = getattr(model, "ood_detector", None)
    if detector is None:
        return None
    test = data.indices("test") if score_test else np.zeros(0, dtype=np.int64)
    result = score_images(model, np.asarray(data.images[data.rows[test]]), prep.mean, prep.std,
                          metadata=None if metadata is None else metadata[test]) if len(test) else None
    flagged = float(result.ood.mean()) if result is not None and len(test) else float("nan")
    summary = {"method": detector.method, "threshold": detector.threshold, "rule": detector.rule,
               "coverage": getattr(detector, "coverage", None), "fitted_on": getattr(detector, "fitted_on", {}),
               "test_images": len(test), "test_flagged": flagged}
    (directory / SUMMARY_FILE).write_text(json.dumps(json_safe(summary), indent=2))
    return summary


def encoded_metadata(model: nn.Module, data: PreparedData) -> np.ndarray | None:
    spec = getattr(model, "metadata_spec", None)
    return None if spec is None else spec.encode(data.table)
