"""What a trained model needs at prediction time beyond its forward pass: the input quality gate and the
out-of-distribution detector."""

from lesionlab.inference.ood import OOD_METHODS, OODDetector, fit_ood_detector
from lesionlab.inference.quality import NotAssessableError, QualityConfig, QualityReport, assess_quality

__all__ = ["OOD_METHODS", "NotAssessableError", "OODDetector", "QualityConfig", "QualityReport", "assess_quality",
           "fit_ood_detector"]
