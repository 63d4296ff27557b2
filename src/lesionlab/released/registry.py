"""The registry of built-in models and how a model reference (``builtin``, ``builtin:NAME``, a name) resolves.

A released model is a pruned run directory inside the package: ``model.pt`` (half-precision or int8 weights +
preprocessing), ``model.onnx``, ``splits.csv`` (the images and lesions it trained and was calibrated on, so
``evaluate`` refuses them), ``config.yaml`` and ``card.json`` (its model card). A released ensemble holds
``ensemble.json`` instead of ``model.pt``, its members under ``members/i/`` and ``onnx/ensemble.json``.
Importing this module loads nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lesionlab.registry import Registry

PACKAGE_DIR = Path(__file__).parent / "models"


@dataclass(frozen=True)
class ReleasedModel:
    name: str
    summary: str

    @property
    def directory(self) -> Path:
        return PACKAGE_DIR / self.name


RELEASED: Registry[ReleasedModel] = Registry("built-in model")
_HAM7 = ReleasedModel(
    "ham7-lite2", "2 x EfficientNet-Lite2 (ImageNet transfer, 150 px; train-only run + refit, int8), HAM10000 7 "
    "classes; non-commercial (CC BY-NC)")
RELEASED.add("ham7-lite2", _HAM7,
             help="the default built-in model: HAM10000 7-class diagnosis + triage priority (non-commercial use)")
RELEASED.add("ham7-lite0", _HAM7, help="former name of ham7-lite2 (the built-in model before its Lite2 recipe); "
             "resolves to ham7-lite2")
DEFAULT_MODEL = "ham7-lite2"
PREFIX = "builtin"


def is_released_ref(ref: str | Path | None) -> bool:
    """True for ``None``, ``builtin``, ``builtin:NAME`` and registered names that are not existing paths."""
    if ref is None:
        return True
    text = str(ref)
    if text == PREFIX or text.startswith(PREFIX + ":"):
        return True
    return text in RELEASED and not Path(text).exists()


def released_dir(ref: str | Path | None = None) -> Path:
    """The folder of a built-in model (``None``/``builtin``: the default). Raises FileNotFoundError, saying what to
    do, when this installation does not ship its files."""
    text = DEFAULT_MODEL if ref is None or str(ref) == PREFIX else str(ref).removeprefix(PREFIX + ":")
    model = RELEASED.get(text)  # an unknown name lists the valid ones
    if not any((model.directory / f).is_file() for f in ("model.pt", "ensemble.json")):
        raise FileNotFoundError(
            f"the built-in model {text!r} is not shipped in this installation ({model.directory} has no model.pt or "
            "ensemble.json); "
            "reinstall lesionlab from a release, or pass a run directory / model.pt / .onnx you trained")
    return model.directory


def resolve_model_ref(ref: str | Path | None) -> Path | str:
    """A built-in reference → its folder; anything else (a path) unchanged."""
    return released_dir(ref) if is_released_ref(ref) else ref


__all__ = ["DEFAULT_MODEL", "PACKAGE_DIR", "RELEASED", "ReleasedModel", "is_released_ref", "released_dir",
           "resolve_model_ref"]
