"""Model artefacts that carry their own preprocessing, so training and inference cannot drift."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from lesionlab.config import ModelConfig, from_dict
from lesionlab.models.classifier import LesionClassifier, create_model

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


def save_model(path: str | Path, model: LesionClassifier, model_cfg: ModelConfig, prep: Preprocessing,
               extra: dict[str, Any] | None = None) -> None:
    cfg = asdict(model_cfg)
    cfg["pretrained"] = False  # the weights are in the file; never re-download at load time
    cfg["weights"] = None
    torch.save({"format": FORMAT, "model": cfg, "preprocessing": asdict(prep),
                "state_dict": model.state_dict(), "extra": extra or {}}, path)


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[LesionClassifier, Preprocessing]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Model file not found: {path}")
    blob = torch.load(path, map_location=map_location, weights_only=False)
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise ValueError(f"{path} is not a LesionLab model file (expected format {FORMAT})")
    prep_dict = dict(blob["preprocessing"])
    for key in ("mean", "std", "class_names"):
        prep_dict[key] = tuple(prep_dict[key])
    prep = Preprocessing(**prep_dict)
    model = create_model(from_dict(ModelConfig, blob["model"]), len(prep.class_names))
    model.load_state_dict(blob["state_dict"])
    model.eval()
    return model, prep
