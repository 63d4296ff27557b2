"""Resolve what ``Predictor.load`` is given — a run, a ``model.pt``, an ``.onnx`` export, an ensemble — into a
model, its preprocessing and a :class:`ModelCard` (what ``GET /v1/model`` reports)."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import yaml
from torch import nn

from lesionlab.config import ConfigError
from lesionlab.data.info import DATASET_INFO
from lesionlab.inference.ood import EnsembleDetector, OODDetector
from lesionlab.models.checkpoint import Preprocessing, load_model
from lesionlab.serving.adapted import (
    SiteAdapted,
    adapted_preprocessing,
    is_adapted,
    load_site_head,
    read_adaptation,
)

logger = logging.getLogger(__name__)

#: Headline numbers copied from a run's ``metrics.json`` (held-out, lesion-disjoint test split).
METRIC_KEYS = ("balanced_accuracy", "auc_macro", "accuracy", "n")
MANIFEST_SUFFIXES = (".json", ".yaml", ".yml")


@dataclass
class ModelCard:
    """Who the model is and what it was trained and tested on."""

    name: str
    backend: str
    source: str
    sha256: str
    dataset: str | None = None
    licence: str | None = None
    citation: str | None = None
    metrics: dict[str, Any] | None = None
    training: dict[str, Any] = field(default_factory=dict)
    members: list[dict[str, Any]] = field(default_factory=list)
    model_card: dict[str, Any] | None = None  # a released model's full card (card.json)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Ensemble(nn.Module):
    """Average of the members' temperature-scaled probabilities, returned as log-probabilities so that the
    caller's ``softmax`` recovers exactly that average."""

    def __init__(self, members: Sequence[nn.Module], temperatures: Sequence[float],
                 weights: Sequence[float] | None = None) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        self.temperatures = tuple(float(t) for t in temperatures)
        # optional manifest weights (lesionlab.models.ensemble): a weighted mean; None = the plain mean
        self.weights = None if weights is None else tuple(float(w) / sum(weights) for w in weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.combine_member_logits([m(x) for m in self.members])

    def combine_member_logits(self, logits: Sequence[torch.Tensor]) -> torch.Tensor:
        """The members' logits (in order) → the ensemble's log-probabilities."""
        probs = [(z.float() / t).softmax(-1) for z, t in zip(logits, self.temperatures, strict=True)]
        if self.weights is not None:
            return sum(w * p for w, p in zip(self.weights, probs, strict=True)).clamp_min(1e-12).log()
        return torch.stack(probs).mean(0).clamp_min(1e-12).log()


class ResizedInput(nn.Module):
    """A member trained at a smaller image size inside an ensemble fed at a larger one: its input is resized
    (bicubic, antialiased, like the training images' PIL resize) before it sees it. Same crop, so same field of view."""

    def __init__(self, inner: nn.Module, size: int) -> None:
        super().__init__()
        self.inner = inner
        self.size = int(size)

    def resize(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) == (self.size, self.size):
            return x
        return F.interpolate(x, size=(self.size, self.size), mode="bicubic", antialias=True, align_corners=False)

    def forward(self, x: torch.Tensor, *args: Any) -> torch.Tensor:
        return self.inner(self.resize(x), *args)

    def forward_with_features(self, x: torch.Tensor, meta: torch.Tensor | None = None
                              ) -> tuple[torch.Tensor, torch.Tensor]:
        """What the OOD detectors read: the inner model's features and logits at its own size."""
        from lesionlab.inference.ood import forward_with_features

        return forward_with_features(self.inner, self.resize(x), meta)


def file_sha256(path: Path, length: int = 12) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:length]


def _dataset_card(name: str | None) -> dict[str, Any]:
    if name and name in DATASET_INFO:
        info = DATASET_INFO.get(name)
        return {"dataset": name, "licence": info.licence, "citation": info.citation}
    return {"dataset": name, "licence": None, "citation": None}


def run_metrics(run_dir: Path) -> dict[str, Any] | None:
    """The headline test metrics of a run directory, or None when it has no ``metrics.json``."""
    path = run_dir / "metrics.json"
    if not path.is_file():
        return None
    metrics = json.loads(path.read_text())
    summary = {k: metrics.get(k) for k in METRIC_KEYS if k in metrics}
    for key in ("ci95", "triage_operating_point"):  # lesion-level bootstrap intervals, the triage operating point
        if key in metrics:
            summary[key] = metrics[key]
    summary["split"] = "held-out lesion-disjoint test split of the run"
    return summary


def builtin_metrics(card: dict[str, Any]) -> dict[str, Any] | None:
    """The headline own-test figures of a released model's card (the first evaluation)."""
    if not card.get("evaluations"):
        return None
    name, ev = next(iter(card["evaluations"].items()))
    figs = ev["figures"]
    summary: dict[str, Any] = {k: figs[k]["value"] for k in METRIC_KEYS if k in figs}
    summary.update({"n": ev["n_images"], "split": f"{name}: held-out lesion-disjoint test split",
                    "ci95": {k: [figs[k]["lo"], figs[k]["hi"]] for k in METRIC_KEYS if k in figs}})
    return summary


def load_torch(model_file: Path, device: str = "cpu") -> tuple[nn.Module, Preprocessing, ModelCard]:
    from lesionlab.builtin.card import load_card

    model, prep = load_model(model_file, map_location=device)
    blob = torch.load(model_file, map_location="cpu", weights_only=False)
    blob_extra = blob.get("extra", {})
    attach_ood(model, blob.get("ood"))
    run_dir = model_file.parent
    released = load_card(run_dir)
    card = ModelCard(name=released["name"] if released else run_dir.name, backend="torch", source=str(model_file),
                     sha256=file_sha256(model_file),
                     metrics=builtin_metrics(released) if released else run_metrics(run_dir),
                     training=dict(blob_extra), model_card=released, **_dataset_card(blob_extra.get("dataset")))
    return model, prep, card


def load_onnx_artifact(path: Path) -> tuple[nn.Module, Preprocessing, ModelCard]:
    from lesionlab.serving.onnx import load_onnx

    module, prep, stored = load_onnx(path)
    attach_ood(module, stored.get("ood"))
    card = ModelCard(name=stored.get("name", path.stem), backend="onnx", source=str(path), sha256=file_sha256(path),
                     metrics=stored.get("metrics"), training=dict(stored.get("training") or {}),
                     **_dataset_card(stored.get("dataset")))
    return module, prep, card


def _read_manifest(path: Path) -> tuple[list[Path], dict[str, Any]]:
    data = yaml.safe_load(path.read_text()) if path.suffix != ".json" else json.loads(path.read_text())
    if not isinstance(data, dict) or not isinstance(data.get("members"), list) or not data["members"]:
        raise ConfigError(f"{path}: an ensemble manifest needs a non-empty 'members' list of run directories, "
                          "model.pt or .onnx files")
    return [(path.parent / str(m)).resolve() for m in data["members"]], data


def load_ensemble(paths: Sequence[Path], device: str = "cpu", manifest: dict[str, Any] | None = None,
                  name: str = "ensemble") -> tuple[nn.Module, Preprocessing, ModelCard]:
    """Members must share classes, crop and normalisation (mean/std); their probabilities are averaged.

    Members may differ in image size: the ensemble reads images at the largest, and a smaller member's input is
    resized to its own size (:class:`ResizedInput`)."""
    loaded = [load_single(p, device) for p in paths]
    first = loaded[0][1]
    for (_, prep, card) in loaded[1:]:
        for key in ("class_names", "crop", "mean", "std"):
            if getattr(prep, key) != getattr(first, key):
                raise ConfigError(f"ensemble member {card.source} has {key}={getattr(prep, key)!r} but the first "
                                  f"member has {getattr(first, key)!r}; members must share classes, crop and "
                                  "normalisation")
    size = max(p.image_size for _, p, _ in loaded)
    manifest = manifest or {}
    threshold = manifest.get("unsure_threshold")
    prep = replace(first, image_size=size, temperature=1.0, thresholds=dict(manifest.get("thresholds") or {}),
                   unsure_threshold=None if threshold is None else float(threshold),
                   unsure_rule=str(manifest.get("unsure_rule", "")) if threshold is not None else "",
                   canonical=manifest.get("canonical", first.canonical), cascade=manifest.get("cascade"))
    members = [m if p.image_size == size else ResizedInput(m, p.image_size) for m, p, _ in loaded]
    model = Ensemble(members, [p.temperature for _, p, _ in loaded], manifest.get("weights"))
    detectors = [getattr(m, "ood_detector", None) for m, _, _ in loaded]
    if all(d is not None for d in detectors):  # the ensemble flags by the members' mean normalised score
        model.ood_detector = EnsembleDetector(detectors)
    elif any(d is not None for d in detectors):
        logger.warning("Only some ensemble members store an OOD detector: the ensemble has none "
                       "(run 'lesionlab ood fit' on the ensemble folder)")
    cards = [c for _, _, c in loaded]
    datasets = {c.dataset for c in cards}
    card = ModelCard(name=name, backend="ensemble", source=", ".join(c.source for c in cards),
                     sha256=hashlib.sha256("".join(c.sha256 for c in cards).encode()).hexdigest()[:12],
                     **_dataset_card(datasets.pop() if len(datasets) == 1 else None),
                     members=[{"name": c.name, "backend": c.backend, "source": c.source, "metrics": c.metrics}
                              for c in cards])
    return model, prep, card


def attach_ood(model: nn.Module, stored: dict[str, Any] | None) -> None:
    """Restore a stored OOD detector onto ``model.ood_detector`` (where the predictor looks for it)."""
    model.ood_detector = OODDetector.from_dict(stored) if stored else None


def load_single(path: Path, device: str = "cpu") -> tuple[nn.Module, Preprocessing, ModelCard]:
    if path.is_dir():
        for candidate in ("model.pt", "model.onnx"):
            if (path / candidate).is_file():
                return load_single(path / candidate, device)
        raise FileNotFoundError(f"{path} holds no model.pt or model.onnx (is it a LesionLab run directory?)")
    if not path.is_file():
        raise FileNotFoundError(f"model not found: {path}")
    if path.suffix == ".onnx":
        return load_onnx_artifact(path)
    return load_torch(path, device)


def load_artifact(path: str | Path | Sequence[str | Path], device: str = "cpu"
                  ) -> tuple[nn.Module, Preprocessing, ModelCard]:
    """Dispatch on what ``path`` is; see :meth:`lesionlab.serving.predictor.Predictor.load`."""
    if isinstance(path, list | tuple):
        if len(path) == 1:
            return load_artifact(path[0], device)
        return load_ensemble([Path(p) for p in path], device)
    path = Path(path)
    if is_adapted(path):
        return load_adapted(path, device)
    manifest = path / "ensemble.json" if path.is_dir() and not (path / "model.pt").is_file() else path
    if manifest.is_file() and manifest.suffix in MANIFEST_SUFFIXES:
        from lesionlab.builtin.card import load_card

        members, data = _read_manifest(manifest)
        model, prep, card = load_ensemble(members, device, data, name=str(data.get("name", manifest.parent.name)))
        card.model_card = load_card(manifest.parent)  # a released ensemble's card.json (or one folder up: onnx/)
        if card.model_card is None and manifest.parent.name == "onnx":
            card.model_card = load_card(manifest.parent.parent)
        return model, prep, card
    return load_single(path, device)


def load_adapted(path: Path, device: str = "cpu") -> tuple[nn.Module, Preprocessing, ModelCard]:
    """A folder written by ``lesionlab adapt``: its base model with the site's temperature and thresholds. The
    folder's ``splits.csv`` (the adaptation images) joins the base model's seen-image record."""
    from lesionlab.builtin.registry import resolve_model_ref

    record = read_adaptation(path)
    model, prep, card = load_artifact(resolve_model_ref(record["base_model"]), device)
    members = card.members or [{"name": card.name, "backend": card.backend, "source": card.source,
                                "metrics": card.metrics}]
    site = {"name": "site adaptation", "backend": "adaptation", "source": str(path), "metrics": None}
    adapted = replace(card, name=str(record.get("name", path.name)), source=str(path), members=[*members, site],
                      training={**card.training, "adaptation": {k: record[k] for k in
                                                                ("base_model", "dataset", "images", "created",
                                                                 "method", "temperature", "thresholds")
                                                                if k in record}})
    return SiteAdapted(model, prep.temperature, load_site_head(path)), adapted_preprocessing(prep, record), adapted
