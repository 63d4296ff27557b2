"""``Predictor``: load a run, an ensemble or an ONNX export with its preprocessing and turn images into ranked
diagnoses with calibrated probabilities, a triage priority (and the rule behind it), an "unsure" flag and,
optionally, a heat-map."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from lesionlab.data.canonical import canonicalise
from lesionlab.data.crops import get_crop
from lesionlab.data.images import DEFAULT_MAX_PIXELS, ImageReadError, open_image
from lesionlab.data.taxonomy import TAXONOMIES
from lesionlab.data.transforms import to_model_input
from lesionlab.inference.ood import OODResult, score_images
from lesionlab.inference.predict import predict_probs
from lesionlab.inference.quality import NotAssessableError, QualityConfig, check_quality
from lesionlab.inference.triage import decide_triage
from lesionlab.inference.unsure import is_unsure
from lesionlab.models.checkpoint import Preprocessing
from lesionlab.serving.heatmap import colorize, compute_heatmap, default_method, png_data_url
from lesionlab.serving.metadata import MetadataError, PatientMetadata
from lesionlab.serving.seen import SeenImages

logger = logging.getLogger(__name__)

ImageInput = str | Path | bytes | Image.Image
MetadataInput = PatientMetadata | Mapping[str, Any] | None


@dataclass(frozen=True)
class Diagnosis:
    label: str
    description: str
    probability: float


@dataclass(frozen=True)
class Prediction:
    """One image's result: top-k diagnoses, all probabilities, the triage priority (and why), the unsure flag."""

    source: str
    top: tuple[Diagnosis, ...]
    probabilities: dict[str, float]
    triage_priority: int | None  # None: not assessable (out of distribution), no priority is given
    triage_rule: str
    triage_reason: str = ""
    unsure: bool | None = None  # None: the artifact has no threshold (see ``unsure_reason``)
    unsure_reason: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    heatmap: dict[str, str] | None = None
    seen_in_training: bool | None = None  # image or lesion id in the training/validation data; None: unknown
    seen_reason: str = ""
    ood: bool | None = None  # None: the artifact stores no OOD detector (see ``ood_reason``)
    ood_score: float | None = None
    ood_reason: str = ""

    @property
    def label(self) -> str:
        return self.top[0].label

    def as_dict(self) -> dict:
        return {"image": self.source, "label": self.label, "triage_priority": self.triage_priority,
                "triage_rule": self.triage_rule, "triage_reason": self.triage_reason,
                "unsure": self.unsure, "unsure_reason": self.unsure_reason,
                "top": [d.__dict__ for d in self.top], "probabilities": self.probabilities,
                "metadata": self.metadata, "heatmap": self.heatmap,
                "seen_in_training": self.seen_in_training, "seen_reason": self.seen_reason,
                "ood": self.ood, "ood_score": self.ood_score, "ood_reason": self.ood_reason}


@dataclass(frozen=True)
class ImageError:
    """An image that got no prediction: unreadable (``ImageReadError`` reason) or ``not_assessable``."""

    source: str
    code: str
    message: str

    def __str__(self) -> str:
        return self.message

    def as_dict(self) -> dict:
        return {"image": self.source, "error": {"code": self.code, "message": self.message}}


class Predictor:
    """Restores a model + its preprocessing; ``predict`` accepts paths, bytes or PIL images.

    ``backend`` is ``torch`` (eager), ``onnx`` (ONNX Runtime) or ``ensemble``; ``card`` describes the artifact
    (see :mod:`lesionlab.serving.model_loading`).
    """

    def __init__(self, model: torch.nn.Module, prep: Preprocessing, device: str = "cpu", *,
                 backend: str = "torch", card: Any = None, max_pixels: int = DEFAULT_MAX_PIXELS,
                 quality: QualityConfig | None = None) -> None:
        self.model = model.eval().to(device)
        self.prep = prep
        self.device = device
        self.backend = backend
        self.card = card
        self.max_pixels = max_pixels
        self.seen: SeenImages | None = None  # which images the model trained/validated on (None: unknown)
        self.quality = quality or QualityConfig()  # the input quality gate (``enabled=False`` turns it off)
        self._crop = get_crop(prep.crop)
        tax = TAXONOMIES.get(prep.taxonomy) if prep.taxonomy in TAXONOMIES else None
        self._describe = (lambda c: tax.descriptions.get(c, c)) if tax else (lambda c: c)

    @classmethod
    def load(cls, path: str | Path | Sequence[str | Path] | None = None, device: str = "cpu", *,
             max_pixels: int = DEFAULT_MAX_PIXELS, quality: QualityConfig | None = None) -> Predictor:
        """Load a run directory, a ``model.pt``, an ``.onnx`` export (ONNX Runtime is used automatically), an
        ensemble manifest (``.json``/``.yaml`` listing member runs), a list of runs (an ensemble), or a built-in
        model (``None``, ``"builtin"``, ``"builtin:NAME"`` or a built-in name)."""
        from lesionlab.builtin.registry import resolve_model_ref
        from lesionlab.serving.model_loading import load_artifact

        if path is None or isinstance(path, str | Path):
            path = resolve_model_ref(path)  # a path that does not exist raises, naming the built-in names
        else:
            path = [resolve_model_ref(p) for p in path]
        model, prep, card = load_artifact(path, device)
        predictor = cls(model, prep, device, backend=card.backend, card=card, max_pixels=max_pixels, quality=quality)
        predictor.seen = SeenImages.for_sources([m["source"] for m in card.members] or [card.source])
        return predictor

    @classmethod
    def pretrained(cls, name: str | None = None, device: str = "cpu", *, max_pixels: int = DEFAULT_MAX_PIXELS,
                   quality: QualityConfig | None = None) -> Predictor:
        """The built-in released model ``name`` (default: ``lesionlab.builtin.DEFAULT_MODEL``)."""
        from lesionlab.builtin.registry import builtin_dir

        return cls.load(builtin_dir(name), device, max_pixels=max_pixels, quality=quality)

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.prep.class_names

    def describe(self, label: str) -> str:
        return self._describe(label)

    @property
    def unsure_available(self) -> bool:
        return self.prep.unsure_threshold is not None

    @property
    def unsure_rule(self) -> str:
        if self.prep.unsure_threshold is None:
            return ("not available: this model file stores no unsure threshold (it was trained before LesionLab "
                    "fitted one on the validation split, or it is an ensemble without one)")
        return self.prep.unsure_rule or f"max softmax probability < {self.prep.unsure_threshold:.3f}"

    @property
    def ood_detector(self) -> Any:
        """The OOD detector stored with the model (an ensemble's members' detectors), or None."""
        return getattr(self.model, "ood_detector", None)

    @property
    def heatmap_method(self) -> str | None:
        """The heat-map method this backend supports (None for ONNX Runtime, which has no gradients)."""
        return None if self.backend == "onnx" else default_method()

    def decode(self, image: ImageInput, name: str | None = None) -> Image.Image:
        """Upright 8-bit RGB (any mode, EXIF rotation applied); bad images raise :class:`ImageReadError`."""
        if isinstance(image, Image.Image):
            return open_image_from_pil(image)
        return open_image(image, max_pixels=self.max_pixels, name=name)

    def assess(self, img: Image.Image, name: str) -> None:
        """The input quality gate: raises :class:`NotAssessableError` (blank, tiny, extreme shape, exposure, blur)."""
        check_quality(img, self.quality, name)

    def preprocess(self, image: ImageInput, name: str | None = None) -> np.ndarray:
        img = self.decode(image, name)
        self.assess(img, name or "image")  # the quality gate judges the upload itself
        img = canonicalise(img, self.prep.canonical)  # the model's acquisition chain (e.g. HAM10000's 200x150 JPEGs)
        return np.asarray(self._crop(img, self.prep.image_size), dtype=np.uint8)

    def predict_arrays(self, batch: np.ndarray,
                       metadata: Sequence[Mapping[str, Any] | None] | None = None) -> np.ndarray:
        """Calibrated probabilities for preprocessed uint8 ``(N, H, W, 3)`` images (the run's TTA included).

        ``metadata``: raw age/sex/site per image for metadata-fusion models, encoded with the spec stored in the
        checkpoint; absent entries or fields count as missing. Image-only models ignore it.
        """
        spec = getattr(self.model, "metadata_spec", None)
        encoded = None if spec is None else spec.encode(list(metadata) if metadata is not None else [None] * len(batch))
        return predict_probs(self.model, batch, self.prep.mean, self.prep.std, temperature=self.prep.temperature,
                             tta=self.prep.tta, device=self.device, batch_size=64, metadata=encoded)

    def ood_scores(self, batch: np.ndarray, metadata: Sequence[Mapping[str, Any] | None] | None = None
                   ) -> OODResult | None:
        """The OOD detector's verdict on preprocessed uint8 ``(N, H, W, 3)`` images (None: no detector stored)."""
        spec = getattr(self.model, "metadata_spec", None)
        encoded = None if spec is None else spec.encode(list(metadata) if metadata is not None else [None] * len(batch))
        return score_images(self.model, batch, self.prep.mean, self.prep.std, device=self.device, metadata=encoded)

    def predict(self, images: Sequence[ImageInput], topk: int = 3, names: Sequence[str] | None = None,
                metadata: Sequence[MetadataInput] | None = None, heatmap: bool = False,
                lesion_ids: Sequence[str | None] | None = None) -> list[Prediction]:
        """Predict a batch. ``metadata`` (one entry per image) is validated, used by metadata-fusion models
        (missing fields allowed) and echoed in the result. ``heatmap`` adds a PNG overlay of the top-1 class's
        evidence. Images failing the quality gate raise :class:`NotAssessableError`. Images whose name (image id) or
        lesion id (``lesion_ids``, else looked up) the model trained or validated on are marked ``seen_in_training``."""
        if not images:
            return []
        meta = _parse_metadata(metadata, len(images))
        if lesion_ids is not None and len(lesion_ids) != len(images):
            raise ValueError(f"got {len(lesion_ids)} lesion ids for {len(images)} images; give one (or None) per image")
        names = list(names) if names else [str(im) if isinstance(im, str | Path) else f"image-{i}"
                                           for i, im in enumerate(images)]
        batch = np.stack([self.preprocess(im, n) for im, n in zip(images, names, strict=True)])
        raw_meta = [m.as_dict() if m is not None else None for m in meta]
        probs = self.predict_arrays(batch, raw_meta)
        ood = self.ood_scores(batch, raw_meta)
        results = []
        for i, (name, p) in enumerate(zip(names, probs, strict=True)):
            heat = self._heatmap(batch[i], int(np.argmax(p)), meta[i]) if heatmap else None
            results.append(self._with_ood(self._result(name, p, topk, meta[i], heat,
                                                        lesion_ids[i] if lesion_ids else None), ood, i))
        return results

    def assemble(self, name: str, probs: np.ndarray, topk: int = 3, metadata: PatientMetadata | None = None,
                 ood: OODResult | None = None, index: int = 0) -> Prediction:
        """One image's prediction from probabilities (and its batch's OOD verdicts, row ``index``) computed
        elsewhere, e.g. by the server's batched path (:mod:`lesionlab.serving.fastpath`)."""
        return self._with_ood(self._result(name, probs, topk, metadata), ood, index)

    def predict_files(self, paths: Sequence[str | Path], topk: int = 3,
                      batch_size: int = 64) -> tuple[list[Prediction], list[ImageError]]:
        """Predict files in batches; unreadable or not assessable ones are reported (an :class:`ImageError`, whose
        ``str`` is "path: reason") instead of stopping the rest."""
        results: list[Prediction] = []
        errors: list[ImageError] = []
        arrays: list[np.ndarray] = []
        names: list[str] = []

        def flush() -> None:
            if arrays:
                batch = np.stack(arrays)
                probs, ood = self.predict_arrays(batch), self.ood_scores(batch)
                results.extend(self._with_ood(self._result(n, p, topk), ood, i)
                               for i, (n, p) in enumerate(zip(names, probs, strict=True)))
                arrays.clear()
                names.clear()

        for path in paths:
            try:
                arrays.append(self.preprocess(path))
                names.append(str(path))
            except ImageReadError as exc:
                errors.append(ImageError(str(path), exc.reason, str(exc)))
            except NotAssessableError as exc:
                errors.append(ImageError(str(path), "not_assessable", str(exc)))
            if len(arrays) >= batch_size:
                flush()
        flush()
        return results, errors

    def _heatmap(self, array: np.ndarray, class_index: int, meta: PatientMetadata | None = None) -> dict[str, str]:
        if self.heatmap_method is None:
            return {"method": "none", "note": "heat-maps need gradients; ONNX Runtime artifacts have none. "
                    "Serve the run directory (PyTorch) for heat-maps."}
        x = to_model_input(torch.from_numpy(array).permute(2, 0, 1)[None].to(self.device), self.prep.mean,
                           self.prep.std)
        spec = getattr(self.model, "metadata_spec", None)
        model = self.model if spec is None else _MetadataBound(
            self.model, torch.from_numpy(spec.encode([meta.as_dict() if meta else None])).to(self.device))
        heat, method = compute_heatmap(model, x, class_index, self.heatmap_method)
        return {"method": method, "class": self.class_names[class_index],
                "image": png_data_url(array), "overlay": png_data_url(colorize(heat, array.shape[0]))}

    def seen_reason(self, name: str, lesion_id: str | None = None) -> tuple[bool | None, str]:
        """(seen_in_training, why) for an image name; (None, why not known) when the artifact has no split record."""
        if self.seen is None:
            return None, "unknown: no splits.csv beside the model (which images it trained on is not recorded)"
        why = self.seen.reason(name, lesion_id)
        return bool(why), why

    def _result(self, name: str, p: np.ndarray, topk: int, meta: PatientMetadata | None = None,
                heat: dict[str, str] | None = None, lesion_id: str | None = None) -> Prediction:
        order = np.argsort(-p)[: max(1, min(topk, len(p)))]
        top = tuple(Diagnosis(self.class_names[i], self._describe(self.class_names[i]), float(p[i])) for i in order)
        triage = decide_triage(p, self.class_names, self.prep.thresholds)
        seen, seen_why = self.seen_reason(name, lesion_id)
        if self.prep.unsure_threshold is None:
            unsure, why = None, self.unsure_rule
        else:
            unsure = bool(is_unsure(p[None], self.prep.unsure_threshold)[0])
            why = (f"confidence {float(p.max()):.3f} is below" if unsure else
                   f"confidence {float(p.max()):.3f} is at or above") + f" the threshold ({self.unsure_rule})"
        return Prediction(source=name, top=top,
                          probabilities={c: float(v) for c, v in zip(self.class_names, p, strict=True)},
                          triage_priority=triage.priority, triage_rule=triage.rule, triage_reason=triage.rule_text,
                          unsure=unsure, unsure_reason=why, metadata=meta.as_dict() if meta else {}, heatmap=heat,
                          seen_in_training=seen, seen_reason=seen_why)


    def _with_ood(self, result: Prediction, ood: OODResult | None, i: int) -> Prediction:
        """Attach the OOD verdict; an out-of-distribution image gets no triage priority."""
        if ood is None:
            return replace(result, ood=None, ood_reason="not available: this model stores no OOD detector (fit one "
                           "with 'lesionlab ood fit RUN')")
        flagged = bool(ood.ood[i])
        result = replace(result, ood=flagged, ood_score=float(ood.score[i]), ood_reason=ood.reasons[i])
        if flagged:
            result = replace(result, triage_priority=None, triage_rule="not-assessable",
                             triage_reason="not assessable: " + ood.reasons[i])
        return result


class _MetadataBound(torch.nn.Module):
    """A metadata-fusion model with one image's encoded metadata bound, called like an image-only model by the
    heat-map methods."""

    def __init__(self, model: torch.nn.Module, meta: torch.Tensor) -> None:
        super().__init__()
        self.model = model
        self.meta = meta.float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x, self.meta.expand(len(x), -1))


def open_image_from_pil(img: Image.Image) -> Image.Image:
    """A PIL image already in memory gets the same mode handling as a file (16-bit, alpha, palette, CMYK)."""
    from lesionlab.data.images import _to_rgb

    return _to_rgb(img)


def _parse_metadata(metadata: Sequence[MetadataInput] | None, n: int) -> list[PatientMetadata | None]:
    if metadata is None:
        return [None] * n
    if len(metadata) != n:
        raise MetadataError("metadata", f"got {len(metadata)} entries for {n} images; give one per image")
    return [m if isinstance(m, PatientMetadata) or m is None else PatientMetadata.from_mapping(m) for m in metadata]
