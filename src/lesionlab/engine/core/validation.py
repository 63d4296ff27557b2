"""The operating point of a run, fitted on its validation split only (never on test).

:func:`tune_on_validation` predicts the validation split's test-time views once and hands them to
:func:`lesionlab.evaluation.operating_point_fit.fit_operating_point`; the views are kept for the report's
operating-point tables (:mod:`lesionlab.reports.depth_artifacts`).
"""

from __future__ import annotations

import logging

import numpy as np
from torch import nn

from lesionlab.config import ExperimentConfig
from lesionlab.data.prepare import PreparedData
from lesionlab.evaluation.operating_point_fit import fit_operating_point
from lesionlab.inference.predict import predict_view_logits
from lesionlab.models.checkpoint import Preprocessing
from lesionlab.reports.depth_artifacts import ValidationOutputs

logger = logging.getLogger(__name__)


def tune_on_validation(model: nn.Module, data: PreparedData, prep: Preprocessing, cfg: ExperimentConfig,
                       metadata: np.ndarray | None = None) -> tuple[Preprocessing, ValidationOutputs | None]:
    """The operating point (:func:`~lesionlab.evaluation.operating_point_fit.fit_operating_point`: temperature if
    ``eval.calibrate``, priority-1 thresholds for ``eval.triage_sensitivity``, the unsure threshold) from the
    validation split's test-time-view logits."""
    val = data.indices("val")
    if len(val) == 0:
        logger.warning("No validation split: temperature scaling and operating thresholds are skipped")
        return prep, None
    logits = predict_view_logits(model, data.images, prep.mean, prep.std, indices=data.rows[val],
                                 batch_size=cfg.eval.batch_size, tta=prep.tta,
                                 metadata=None if metadata is None else metadata[val])  # metadata-fusion models
    y = data.targets()[val]
    point = fit_operating_point(logits, y, prep.class_names, calibrate=cfg.eval.calibrate,
                                sensitivity=cfg.eval.triage_sensitivity)
    return point.apply(prep), ValidationOutputs(logits, y)
