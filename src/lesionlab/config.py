"""Typed experiment configuration: dataclasses filled from YAML, overridden by ``key=value`` pairs.

Config flows one way: CLI → :class:`ExperimentConfig` → builders. The resolved config is written next to
every run's outputs so the run can be reproduced.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, Union

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration value is missing, unknown or out of range; the message says what to do."""


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


@dataclass
class SplitConfig:
    """Lesion-disjoint train/val/test fractions (stratified by class, grouped by lesion or patient)."""

    val: float = 0.15
    test: float = 0.15
    seed: int = 0
    folds: int = 0  # >1 also assigns a k-fold index to the non-test samples
    column: str | None = None  # use this table column (values train/val/test) instead, e.g. official_split

    def __post_init__(self) -> None:
        _check(0 <= self.val < 1 and 0 <= self.test < 1, "split.val and split.test must lie in [0, 1)")
        _check(self.val + self.test < 1, "split.val + split.test must leave room for a training split (< 1)")
        _check(self.folds == 0 or self.folds >= 2, "split.folds must be 0 (off) or at least 2")


@dataclass
class DataConfig:
    """Which images, in which label space, cropped and resized how."""

    dataset: str = "ham10000"
    root: str | None = None  # data root; default: $LESIONLAB_DATA, then the user cache dir
    image_dir: str | None = None  # override the dataset's image folder
    csv: str | None = None  # table for the csv / onehot-csv datasets
    options: dict[str, Any] = field(default_factory=dict)  # dataset-specific keyword arguments
    taxonomy: str | None = None  # label space to train in (ham7, isic8, triage); default: the dataset's own
    crop: str = "center-square"
    image_size: int = 64
    cache_dir: str | None = None  # default: <user cache>/lesionlab/arrays
    skip_bad: bool = False  # skip unreadable images with a warning instead of failing
    max_samples: int | None = None  # stratified subsample (by lesion) for quick experiments and tests
    split: SplitConfig = field(default_factory=SplitConfig)

    def __post_init__(self) -> None:
        _check(8 <= self.image_size <= 1024, f"data.image_size must be between 8 and 1024, got {self.image_size}")
        _check(self.max_samples is None or self.max_samples > 0, "data.max_samples must be positive or null")


@dataclass
class ModelConfig:
    """Backbone (timm name or LesionLab alias) + head."""

    backbone: str = "resnet10t"
    head: str = "linear"
    pretrained: bool = False  # ImageNet weights from the timm hub (needs internet or a warm HF cache)
    weights: str | None = None  # local state-dict / safetensors file for the backbone
    drop_rate: float = 0.2  # dropout before the classifier
    drop_path_rate: float = 0.0

    def __post_init__(self) -> None:
        _check(0 <= self.drop_rate < 1, "model.drop_rate must lie in [0, 1)")
        _check(0 <= self.drop_path_rate < 1, "model.drop_path_rate must lie in [0, 1)")


@dataclass
class TrainConfig:
    """Optimisation, imbalance handling, augmentation and the Lightning trainer."""

    epochs: int = 40
    batch_size: int = 64
    optimizer: str = "adamw"
    lr: float = 2e-3
    weight_decay: float = 0.05
    scheduler: str = "onecycle"
    warmup_epochs: float = 1.0
    loss: str = "ce"
    label_smoothing: float = 0.0
    class_weights: str = "inverse"
    augment: str = "light"
    monitor: str = "val_bal_acc"
    patience: int = 0  # early-stopping patience in epochs; 0 disables early stopping
    seed: int = 0
    num_workers: int = -1  # -1: chosen from the CPU count
    accelerator: str = "auto"
    devices: str = "auto"
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "32-true"
    progress: bool = True
    max_time_minutes: float | None = None  # hard wall-clock budget for fitting
    ema_decay: float = 0.998  # exponential moving average of the weights; 0 disables it

    def __post_init__(self) -> None:
        _check(self.epochs >= 1, "train.epochs must be at least 1")
        _check(self.batch_size >= 1, "train.batch_size must be at least 1")
        _check(self.lr > 0, "train.lr must be positive")
        _check(self.weight_decay >= 0, "train.weight_decay must be >= 0")
        _check(0 <= self.label_smoothing < 1, "train.label_smoothing must lie in [0, 1)")
        _check(self.patience >= 0, "train.patience must be >= 0")
        _check(0 <= self.ema_decay < 1, "train.ema_decay must lie in [0, 1) (0 disables EMA)")
        _check(self.monitor in {"val_bal_acc", "val_loss", "val_auc"},
               "train.monitor must be val_bal_acc, val_loss or val_auc")


@dataclass
class EvalConfig:
    """What the evaluation reports."""

    topk: tuple[int, ...] = (2, 3)
    batch_size: int = 256
    tta: str = "d4"  # test-time augmentation: none, flips, d4 (stored with the model for the predictor)


@dataclass
class ExperimentConfig:
    """Everything a run needs; written to ``config.yaml`` in the run directory."""

    name: str = "default"
    output_dir: str = "runs"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


# --------------------------------------------------------------------------------------------------------------
# dict <-> dataclass with type checking


def _strip_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _coerce(value: Any, tp: Any, where: str) -> Any:
    tp, optional = _strip_optional(tp)
    if value is None:
        _check(optional, f"{where} may not be null")
        return None
    if dataclasses.is_dataclass(tp):
        _check(isinstance(value, dict), f"{where} must be a mapping")
        return from_dict(tp, value, where)
    origin = typing.get_origin(tp)
    if origin is tuple:
        items = value if isinstance(value, list | tuple) else [value]
        (inner, *_rest) = typing.get_args(tp)
        return tuple(_coerce(v, inner, where) for v in items)
    if origin is dict or tp is dict:
        _check(isinstance(value, dict), f"{where} must be a mapping")
        return dict(value)
    if tp is bool:
        _check(isinstance(value, bool), f"{where} must be true or false, got {value!r}")
        return value
    if tp is int:
        _check(isinstance(value, int) and not isinstance(value, bool), f"{where} must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):  # PyYAML (YAML 1.1) reads exponents without a dot, like 1e-3, as strings
            try:
                value = float(value)
            except ValueError:
                raise ConfigError(f"{where} must be a number, got {value!r}") from None
        _check(isinstance(value, int | float) and not isinstance(value, bool),
               f"{where} must be a number, got {value!r}")
        return float(value)
    if tp is str and isinstance(value, list):  # "0,1" was split by parse_override; a string field wants it whole
        value = ",".join(str(v) for v in value)
    if tp is str:
        _check(isinstance(value, str | int | float) and not isinstance(value, bool), f"{where} must be a string")
        return str(value)
    return value


def from_dict(cls: type[T], data: dict[str, Any], where: str = "") -> T:
    """Build a dataclass from a (possibly partial) mapping; unknown keys are errors that list the valid ones."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = set(data) - names
    if unknown:
        raise ConfigError(f"Unknown config key(s) {sorted(unknown)} in {where or cls.__name__}; valid: {sorted(names)}")
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}".lstrip(".")) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as exc:  # pragma: no cover - dataclass signature errors
        raise ConfigError(str(exc)) from exc


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain-YAML-friendly dict (tuples become lists)."""

    def clean(v: Any) -> Any:
        if isinstance(v, tuple | list):
            return [clean(x) for x in v]
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        return v

    return clean(dataclasses.asdict(cfg))


def parse_override(text: str) -> tuple[list[str], Any]:
    """``train.lr=1e-3`` → (["train", "lr"], 0.001). Values are parsed as YAML scalars/lists."""
    if "=" not in text:
        raise ConfigError(f"Override {text!r} must look like key=value (e.g. train.epochs=5)")
    key, raw = text.split("=", 1)
    _check(bool(key.strip()), f"Override {text!r} has an empty key")
    value = yaml.safe_load(raw) if raw.strip() else None
    if isinstance(value, str) and "," in value and not raw.strip().startswith(("'", '"')):
        value = [yaml.safe_load(v) for v in value.split(",")]
    return key.strip().split("."), value


def _set_path(data: dict[str, Any], path: list[str], value: Any) -> None:
    node = data
    for part in path[:-1]:
        node = node.setdefault(part, {})
        _check(isinstance(node, dict), f"Cannot set {'.'.join(path)}: {part} is not a section")
    node[path[-1]] = value


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> ExperimentConfig:
    """Defaults ← YAML file ← ``key=value`` overrides, validated."""
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"Config file not found: {p}")
        loaded = yaml.safe_load(p.read_text()) or {}
        _check(isinstance(loaded, dict), f"{p} must contain a YAML mapping at the top level")
        data = loaded
    for text in overrides:
        keys, value = parse_override(text)
        _set_path(data, keys, value)
    return from_dict(ExperimentConfig, data)


def save_config(cfg: Any, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
