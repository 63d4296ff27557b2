"""The one place a model's operating point is fitted: temperature, priority-1 thresholds and the unsure threshold.

Every route that ships a model calls :func:`fit_operating_point` on labelled images the model did not train on —
a run's validation split (``train``, ``calibrate``), an ensemble's validation images, a cross-validation's
out-of-fold predictions, a clinic's images (``adapt``) — and stores the result with
:meth:`OperatingPoint.apply`. Change how an operating point is fitted here and every route follows.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from lesionlab.evaluation.operating_points import severity_thresholds
from lesionlab.inference.calibration import fit_temperature
from lesionlab.inference.unsure import UnsureThreshold, fit_unsure_threshold
from lesionlab.models.checkpoint import Preprocessing
from lesionlab.models.ensemble import combine_member_probs

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class OperatingPoint:
    """What was fitted, and the calibrated probabilities it was fitted on."""

    temperatures: tuple[float, ...]  # one per member; a single model has one
    thresholds: dict[str, float]  # priority-1 class thresholds (empty: top-1 decides)
    unsure: UnsureThreshold | None
    probs: np.ndarray = field(repr=False)  # (N, C) calibrated probabilities of the fitting images

    @property
    def temperature(self) -> float:
        """A single model's temperature."""
        if len(self.temperatures) != 1:
            raise ValueError(f"an ensemble has {len(self.temperatures)} temperatures, one per member")
        return self.temperatures[0]

    def apply(self, prep: Preprocessing) -> Preprocessing:
        """``prep`` deciding with this operating point (thresholds added to those it had)."""
        out = replace(prep, thresholds={**prep.thresholds, **self.thresholds})
        if len(self.temperatures) == 1:
            out = replace(out, temperature=self.temperature)
        if self.unsure is not None:
            out = replace(out, unsure_threshold=self.unsure.threshold, unsure_rule=self.unsure.rule)
        return out


def fit_operating_point(view_logits: np.ndarray | Sequence[np.ndarray], labels: np.ndarray,
                        class_names: Sequence[str], *, calibrate: bool = True, sensitivity: float | None = 0.9,
                        unsure: bool = True, temperatures: Sequence[float] | None = None,
                        weights: Sequence[float] | None = None, conformal: bool = False) -> OperatingPoint:
    """Fit on labelled images the model never trained on.

    ``view_logits``: one model's ``(V, N, C)`` test-time-view logits, or a list of them (an ensemble's members).
    ``temperatures``: keep these (an ensemble's members keep their own); otherwise a single model's temperature is
    fitted by NLL when ``calibrate`` (else 1). ``sensitivity``: the priority-1 thresholds' target on these images
    (``None``: fit none; ``conformal``: on new images, :func:`~lesionlab.evaluation.operating_points.
    threshold_for_sensitivity`). ``unsure``: also fit the unsure threshold (MSP at 95 % coverage of correct cases).
    """
    members = [view_logits] if isinstance(view_logits, np.ndarray) else list(view_logits)
    y = np.asarray(labels)
    if temperatures is not None:
        temps = tuple(float(t) for t in temperatures)
    elif len(members) == 1:
        temps = (fit_temperature(members[0], y) if calibrate else 1.0,)
    else:
        raise ValueError("an ensemble's members keep their own temperatures: pass temperatures=")
    probs = combine_member_probs(members, temps, weights)
    thresholds = (severity_thresholds(y, probs, class_names, sensitivity, conformal=conformal)
                  if sensitivity is not None and len(y) else {})
    fitted_unsure = fit_unsure_threshold(probs, y) if unsure else None
    logger.info("Operating point on %d images: temperature %s, thresholds %s%s", len(y),
                ", ".join(f"{t:.3f}" for t in temps), thresholds,
                f"; unsure: {fitted_unsure.rule}" if fitted_unsure else "")
    return OperatingPoint(temps, thresholds, fitted_unsure, probs)
