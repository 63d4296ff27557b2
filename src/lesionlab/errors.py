"""The exceptions that mean "the user's input is wrong": the CLI prints them as one line and exits 2."""

from __future__ import annotations

from lesionlab.config import ConfigError
from lesionlab.data.cache import BadImagesError
from lesionlab.data.download import DownloadError
from lesionlab.data.images import ImageReadError
from lesionlab.data.splits import LeakageError
from lesionlab.data.table import DatasetError
from lesionlab.data.taxonomy import LabelMappingError
from lesionlab.evaluation.evaluate import SeenDataError
from lesionlab.evaluation.exceptions import EvaluationInputError
from lesionlab.inference.quality import NotAssessableError
from lesionlab.models.attention import NoAttentionError
from lesionlab.models.backbones import PretrainedWeightsUnavailable
from lesionlab.registry import UnknownNameError
from lesionlab.serving.metadata import MetadataError
from lesionlab.serving.onnx import OnnxExportError
from lesionlab.training.module import TrainingDivergedError

USER_ERRORS: tuple[type[BaseException], ...] = (
    ConfigError, DatasetError, LabelMappingError, ImageReadError, BadImagesError, LeakageError, SeenDataError,
    UnknownNameError, PretrainedWeightsUnavailable, FileNotFoundError, DownloadError,
    MetadataError, OnnxExportError, EvaluationInputError, NoAttentionError, TrainingDivergedError, NotAssessableError,
)
