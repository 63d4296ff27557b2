"""The registry of built-in models and how a model reference (``builtin``, ``builtin:NAME``, a name) resolves.

A released model is a pruned run directory inside the package: ``model.pt`` (half-precision or int8 weights +
preprocessing), ``model.onnx``, ``splits.csv`` (the images and lesions it trained and was calibrated on, so
``evaluate`` refuses them), ``config.yaml`` and ``card.json`` (its model card). A released ensemble holds
``ensemble.json`` instead of ``model.pt``, its members under ``members/i/`` and ``onnx/ensemble.json``.
Importing this module loads nothing.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

from lesionlab.errors import LesionLabError
from lesionlab.registry import Registry

PACKAGE_DIR = Path(__file__).parent / "models"


@dataclass(frozen=True)
class BuiltinModel:
    name: str
    summary: str

    @property
    def directory(self) -> Path:
        return PACKAGE_DIR / self.name


BUILTIN_MODELS: Registry[BuiltinModel] = Registry("built-in model")
_HAM7 = BuiltinModel(
    "ham7-lite2", "2 x EfficientNet-Lite2 (ImageNet transfer, 150 px; train-only run + refit, int8), HAM10000 7 "
    "classes; non-commercial (CC BY-NC)")
BUILTIN_MODELS.add("ham7-lite2", _HAM7,
             help="the default built-in model: HAM10000 7-class diagnosis + triage priority (non-commercial use)")
BUILTIN_MODELS.add("ham7-lite0", _HAM7, help="former name of ham7-lite2 (the built-in model before its Lite2 recipe); "
             "resolves to ham7-lite2")
DEFAULT_MODEL = "ham7-lite2"
PREFIX = "builtin"


def is_builtin_ref(ref: str | Path | None) -> bool:
    """True for ``None``, ``builtin``, ``builtin:NAME`` and registered names that are not existing paths."""
    if ref is None:
        return True
    text = str(ref)
    if text == PREFIX or text.startswith(PREFIX + ":"):
        return True
    return text in BUILTIN_MODELS and not Path(text).exists()


def builtin_dir(ref: str | Path | None = None) -> Path:
    """The folder of a built-in model (``None``/``builtin``: the default). Raises FileNotFoundError, saying what to
    do, when this installation does not ship its files."""
    text = DEFAULT_MODEL if ref is None or str(ref) == PREFIX else str(ref).removeprefix(PREFIX + ":")
    model = BUILTIN_MODELS.get(text)  # an unknown name lists the valid ones
    if not any((model.directory / f).is_file() for f in ("model.pt", "ensemble.json")):
        raise FileNotFoundError(
            f"the built-in model {text!r} is not shipped in this installation ({model.directory} has no model.pt or "
            "ensemble.json); "
            "reinstall lesionlab from a release, or pass a run directory / model.pt / .onnx you trained")
    return model.directory


class ModelNotFoundError(LesionLabError, FileNotFoundError):
    """A model reference that is neither an existing file or folder nor a built-in name."""


def _closest(name: str, candidates: list[str]) -> list[str]:
    return difflib.get_close_matches(name, candidates, n=2, cutoff=0.6)


def missing_model_message(ref: str | Path) -> str:
    """Why ``ref`` names no model: the path tried, the built-in names, and the closest existing names."""
    path = Path(ref)
    parent = path.parent if str(path.parent) not in ("", ".") else Path(".")
    near: list[str] = []
    if parent.is_dir():
        siblings = [p.name for p in parent.iterdir() if not p.name.startswith(".")]
        near = [str(parent / n) if parent != Path(".") else n for n in _closest(path.name, siblings)]
    near += _closest(str(ref).removeprefix(PREFIX + ":"), BUILTIN_MODELS.valid_names())
    where = "" if parent.is_dir() else f" ({parent}/ does not exist either)"
    hint = f" Did you mean {' or '.join(repr(n) for n in near)}?" if near else ""
    return (f"model {str(ref)!r} not found: no such file or folder{where}, and not a built-in model "
            f"({', '.join(BUILTIN_MODELS.valid_names())}, or {PREFIX!r}).{hint} A model is a run directory, model.pt, "
            ".onnx file, ensemble folder or manifest, or a built-in name.")


def resolve_model_ref(ref: str | Path | None) -> Path | str:
    """A built-in reference → its folder; an existing path unchanged. Anything else raises
    :class:`ModelNotFoundError` naming what was tried: a given model never falls back to another."""
    if is_builtin_ref(ref):
        return builtin_dir(ref)
    if not Path(ref).exists():  # type: ignore[arg-type]
        raise ModelNotFoundError(missing_model_message(ref))  # type: ignore[arg-type]
    return ref  # type: ignore[return-value]


__all__ = [
    "BUILTIN_MODELS",
    "DEFAULT_MODEL",
    "PACKAGE_DIR",
    "BuiltinModel",
    "ModelNotFoundError",
    "builtin_dir",
    "is_builtin_ref",
    "missing_model_message",
    "resolve_model_ref",
]
