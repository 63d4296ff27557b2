"""Model artifacts that carry their own preprocessing, so training and inference cannot drift."""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from lesionlab.config import ModelConfig, from_dict
from lesionlab.models.classifier import LesionClassifier, create_model
from lesionlab.models.compression import dequantize_state
from lesionlab.models.metadata import MetadataSpec

FORMAT = "lesionlab-model/1"


@dataclass
class Preprocessing:
    """Everything needed to turn a raw image into model input and the output back into labels."""

    image_size: int
    crop: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: tuple[str, ...]
    taxonomy: str
    temperature: float = 1.0
    tta: str = "none"
    thresholds: dict[str, float] = field(default_factory=dict)
    unsure_threshold: float | None = None  # max-softmax below this → "unsure" (fitted on the validation split)
    unsure_rule: str = ""  # how the unsure threshold was chosen, shown to users
    canonical: str | None = None  # acquisition chain applied before the crop (lesionlab.data.canonical)
    cascade: dict[str, Any] | None = None  # the server's test-time cascade (lesionlab.inference.cascade)


def save_model(path: str | Path, model: LesionClassifier, model_cfg: ModelConfig, prep: Preprocessing,
               extra: dict[str, Any] | None = None, ood: dict[str, Any] | None = None) -> None:
    """Weights, architecture, preprocessing, metadata encoder and (``ood``) the fitted OOD detector's dict."""
    cfg = asdict(model_cfg)
    cfg["pretrained"] = False  # the weights are in the file; never re-download at load time
    cfg["weights"] = None
    spec = getattr(model, "metadata_spec", None)  # the metadata encoder travels with the weights
    torch.save({"format": FORMAT, "model": cfg, "preprocessing": asdict(prep),
                "state_dict": model.state_dict(), "extra": extra or {},
                "metadata": spec.to_dict() if spec is not None else None, "ood": ood}, path)


def _read_blob(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"Model file not found: {path}")
    blob = torch.load(path, map_location=map_location, weights_only=False)
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise ValueError(f"{path} is not a LesionLab model file (expected format {FORMAT})")
    return blob


def _model_config(blob: dict[str, Any]) -> ModelConfig:
    # The saved state replaces every weight: no ImageNet download or weights package is needed to load a model.
    return dataclasses.replace(from_dict(ModelConfig, blob["model"]), pretrained=False, weights=None)


def read_model_config(path: str | Path) -> ModelConfig:
    """The architecture a model file was saved with."""
    return _model_config(_read_blob(Path(path)))


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[LesionClassifier, Preprocessing]:
    blob = _read_blob(Path(path), map_location)
    prep_dict = dict(blob["preprocessing"])
    for key in ("mean", "std", "class_names"):
        prep_dict[key] = tuple(prep_dict[key])
    prep = Preprocessing(**prep_dict)
    spec = MetadataSpec.from_dict(blob["metadata"]) if blob.get("metadata") else None
    model = create_model(_model_config(blob), len(prep.class_names), metadata_spec=spec)
    model.load_state_dict(dequantize_state(blob["state_dict"]))  # released files may hold int8 weights
    model.eval()
    return model, prep


def read_ood(path: str | Path) -> dict[str, Any] | None:
    """The stored OOD detector dict of a model file (None: fitted before LesionLab stored one, or never)."""
    blob = torch.load(Path(path), map_location="cpu", weights_only=False)
    return blob.get("ood") if isinstance(blob, dict) else None


def store_ood(path: str | Path, ood: dict[str, Any] | None) -> None:
    """Attach (or, with ``None``, remove) an OOD detector dict to an existing model file, in place."""
    path = Path(path)
    blob = _read_blob(path)
    blob["ood"] = ood
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(blob, tmp)
    tmp.replace(path)


def update_preprocessing(path: str | Path, **changes: Any) -> Preprocessing:
    """Rewrite fields of a saved model's :class:`Preprocessing` (e.g. a refitted temperature) in place."""
    path = Path(path)
    blob = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise ValueError(f"{path} is not a LesionLab model file (expected format {FORMAT})")
    unknown = set(changes) - set(blob["preprocessing"]) - {f for f in Preprocessing.__dataclass_fields__}
    if unknown:
        raise ValueError(f"unknown preprocessing fields {sorted(unknown)}")
    blob["preprocessing"] = {**blob["preprocessing"], **changes}
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(blob, tmp)
    tmp.replace(path)
    prep = dict(blob["preprocessing"])
    for key in ("mean", "std", "class_names"):
        prep[key] = tuple(prep[key])
    return Preprocessing(**prep)
