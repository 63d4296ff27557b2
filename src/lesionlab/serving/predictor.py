"""``Predictor``: load a run's model with its preprocessing and turn images into ranked diagnoses + triage."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from lesionlab.data.crops import get_crop
from lesionlab.data.images import ImageReadError, open_image
from lesionlab.data.taxonomy import TAXONOMIES, triage_priority
from lesionlab.evaluation.inference import predict_probs
from lesionlab.models.checkpoint import Preprocessing, load_model


@dataclass(frozen=True)
class Diagnosis:
    label: str
    description: str
    probability: float


@dataclass(frozen=True)
class Prediction:
    """One image's result: top-k diagnoses, all probabilities and the triage priority of the top diagnosis."""

    source: str
    top: tuple[Diagnosis, ...]
    probabilities: dict[str, float]
    triage_priority: int
    triage_rule: str

    @property
    def label(self) -> str:
        return self.top[0].label

    def as_dict(self) -> dict:
        return {"image": self.source, "label": self.label, "triage_priority": self.triage_priority,
                "triage_rule": self.triage_rule,
                "top": [d.__dict__ for d in self.top], "probabilities": self.probabilities}


class Predictor:
    """Restores a model + its preprocessing; ``predict`` accepts paths, bytes or PIL images."""

    def __init__(self, model: torch.nn.Module, prep: Preprocessing, device: str = "cpu") -> None:
        self.model = model.eval().to(device)
        self.prep = prep
        self.device = device
        self._crop = get_crop(prep.crop)
        tax = TAXONOMIES.get(prep.taxonomy) if prep.taxonomy in TAXONOMIES else None
        self._describe = (lambda c: tax.descriptions.get(c, c)) if tax else (lambda c: c)

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> Predictor:
        """``path`` is a run directory or a ``model.pt`` file."""
        path = Path(path)
        model_file = path / "model.pt" if path.is_dir() else path
        model, prep = load_model(model_file)
        return cls(model, prep, device)

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.prep.class_names

    def preprocess(self, image: str | Path | bytes | Image.Image) -> np.ndarray:
        img = image.convert("RGB") if isinstance(image, Image.Image) else open_image(image)
        return np.asarray(self._crop(img, self.prep.image_size), dtype=np.uint8)

    def predict_arrays(self, batch: np.ndarray) -> np.ndarray:
        """Probabilities for preprocessed uint8 ``(N, H, W, 3)`` images."""
        return predict_probs(self.model, batch, self.prep.mean, self.prep.std, temperature=self.prep.temperature,
                             tta=self.prep.tta, device=self.device, batch_size=64)

    def predict(self, images: Sequence[str | Path | bytes | Image.Image], topk: int = 3,
                names: Sequence[str] | None = None) -> list[Prediction]:
        if not images:
            return []
        batch = np.stack([self.preprocess(im) for im in images])
        probs = self.predict_arrays(batch)
        names = list(names) if names else [str(im) if isinstance(im, str | Path) else f"image-{i}"
                                           for i, im in enumerate(images)]
        return [self._result(name, p, topk) for name, p in zip(names, probs, strict=True)]

    def predict_files(self, paths: Sequence[str | Path], topk: int = 3,
                      batch_size: int = 64) -> tuple[list[Prediction], list[str]]:
        """Predict files in batches; unreadable ones are reported (path: reason) instead of stopping the rest."""
        results: list[Prediction] = []
        errors: list[str] = []
        arrays, names = [], []

        def flush() -> None:
            if arrays:
                probs = self.predict_arrays(np.stack(arrays))
                results.extend(self._result(n, p, topk) for n, p in zip(names, probs, strict=True))
                arrays.clear()
                names.clear()

        for path in paths:
            try:
                arrays.append(self.preprocess(path))
                names.append(str(path))
            except ImageReadError as exc:
                errors.append(str(exc))
            if len(arrays) >= batch_size:
                flush()
        flush()
        return results, errors

    def _result(self, name: str, p: np.ndarray, topk: int) -> Prediction:
        order = np.argsort(-p)[: max(1, min(topk, len(p)))]
        top = tuple(Diagnosis(self.class_names[i], self._describe(self.class_names[i]), float(p[i])) for i in order)
        return Prediction(source=name, top=top,
                          probabilities={c: float(v) for c, v in zip(self.class_names, p, strict=True)},
                          triage_priority=triage_priority(top[0].label), triage_rule="top-1 diagnosis")
