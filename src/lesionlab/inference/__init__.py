"""What a trained model needs at prediction time beyond its forward pass: the input quality gate and the
out-of-distribution detector.

The names are re-exported lazily, so that a config check importing :mod:`lesionlab.inference.tta` does not load
PyTorch through the OOD detector."""

from importlib import import_module
from typing import Any

_EXPORTS = {"OOD_METHODS": "ood", "OODDetector": "ood", "fit_ood_detector": "ood", "NotAssessableError": "quality",
            "QualityConfig": "quality", "QualityReport": "quality", "assess_quality": "quality"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)
