"""Typed experiment configuration: dataclasses filled from YAML, overridden by ``key=value`` pairs.

Config flows one way: CLI → :class:`ExperimentConfig` → builders. The resolved config is written next to
every run's outputs so the run can be reproduced.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, Union

import yaml

from lesionlab.errors import LesionLabError

T = TypeVar("T")


class ConfigError(LesionLabError, ValueError):
    """A configuration value is missing, unknown or out of range; the message says what to do."""


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


@dataclass
class SplitConfig:
    """Lesion-disjoint train/val/test fractions (stratified by class, grouped by lesion or patient)."""

    val: float = 0.15  # share of lesions (or patients) in the validation split
    test: float = 0.15  # share of lesions (or patients) in the held-out test split
    seed: int = 0  # seed of the split (independent of train.seed)
    folds: int = 0  # >1 also assigns a k-fold index to the non-test samples
    column: str | None = None  # use this table column (values train/val/test) instead, e.g. official_split
    val_fold: int | None = None  # cross-validation: this fold (of `folds`) is the validation split, the rest train
    unit: str = "lesion"  # lesion: lesion-disjoint (always, except:) image: ignore lesion ids (leakage audit only)

    def __post_init__(self) -> None:
        _check(0 <= self.val < 1 and 0 <= self.test < 1, "split.val and split.test must lie in [0, 1)")
        _check(self.val + self.test < 1, "split.val + split.test must leave room for a training split (< 1)")
        _check(self.folds == 0 or self.folds >= 2, "split.folds must be 0 (off) or at least 2")
        _check(self.val_fold is None or 0 <= self.val_fold < self.folds,
               f"split.val_fold must lie in [0, split.folds) (split.folds={self.folds}), got {self.val_fold}")
        _check(self.unit in ("lesion", "image"), f"split.unit must be lesion or image, got {self.unit!r}")


@dataclass
class DataConfig:
    """Which images, in which label space, cropped and resized how."""

    dataset: str = "ham10000"  # registered dataset name (lesionlab data info NAME; see docs/datasets.md)
    root: str | None = None  # data root; default: $LESIONLAB_DATA, then the user cache dir
    image_dir: str | None = None  # override the dataset's image folder
    csv: str | None = None  # table for the csv / onehot-csv datasets
    options: dict[str, Any] = field(default_factory=dict)  # dataset-specific keyword arguments
    taxonomy: str | None = None  # label space to train in (ham7, isic8, triage); default: the dataset's own
    crop: str = "center-square"  # center-square (ISIC 2018 test protocol) | full (squashed) | pad
    image_size: int = 64  # side in pixels of the square model input
    cache_dir: str | None = None  # default: <user cache>/lesionlab/arrays
    skip_bad: bool = False  # skip unreadable images with a warning instead of failing
    max_samples: int | None = None  # stratified subsample (by lesion) for quick experiments and tests
    split: SplitConfig = field(default_factory=SplitConfig)

    def __post_init__(self) -> None:
        _check(8 <= self.image_size <= 1024, f"data.image_size must be between 8 and 1024, got {self.image_size}")
        _check(self.max_samples is None or self.max_samples > 0, "data.max_samples must be positive or null")


#: Pooling choices that keep the feature length equal to the backbone's channel count.
GLOBAL_POOLS = ("avg", "max", "avgmax")


@dataclass
class ModelConfig:
    """Backbone (timm name or LesionLab alias) + head."""

    backbone: str = "resnet10t"  # LesionLab alias or any timm name (lesionlab models lists them)
    head: str = "linear"  # linear | gap-bn-dropout | bn-dense | fc-dropout-fc | mlp
    # false | imagenet (= true: offline package weights when installed, else the timm hub) | hub | a timm tag (in1k)
    pretrained: str | bool = False
    weights: str | None = None  # local state-dict / safetensors file for the backbone
    drop_rate: float = 0.2  # dropout before the classifier
    drop_path_rate: float = 0.0  # stochastic depth inside the backbone (timm)
    attention: str = "none"  # none | soft (soft-attention block; see lesionlab.models.attention)
    attention_stage: int = -1  # insert attention after this backbone stage (later stages dropped); -1: at the end
    global_pool: str = "avg"  # pooling of the backbone's feature map: avg (GAP), max (GMP) or avgmax
    metadata: bool = False  # fuse patient age/sex/site with the image features
    metadata_fields: tuple[str, ...] = ("age", "sex", "site")  # which metadata the fusion branch reads
    metadata_dropout: float = 0.1  # training: encode each metadata field as missing with this probability
    freeze_backbone: bool = False  # train only the head (and metadata branch); the backbone stays fixed
    feature_cache: bool = True  # with freeze_backbone: compute backbone features once and train on the cache
    colour_constancy: str = "none"  # none | shades-of-gray: white balance inside the model (travels with it)

    def __post_init__(self) -> None:
        _check(0 <= self.drop_rate < 1, "model.drop_rate must lie in [0, 1)")
        _check(0 <= self.drop_path_rate < 1, "model.drop_path_rate must lie in [0, 1)")
        _check(isinstance(self.pretrained, bool) or (isinstance(self.pretrained, str) and bool(
               re.fullmatch(r"[A-Za-z0-9_]+", self.pretrained.strip()))),
               "model.pretrained must be true or false, imagenet, hub or a timm pretrained tag (e.g. in1k), "
               f"got {self.pretrained!r}")
        _check(self.attention_stage >= -1, "model.attention_stage must be -1 (the end) or a stage index >= 0")
        _check(self.global_pool in GLOBAL_POOLS, f"model.global_pool must be one of {', '.join(GLOBAL_POOLS)}, "
               f"got {self.global_pool!r}")
        _check(0 <= self.metadata_dropout < 1, "model.metadata_dropout must lie in [0, 1)")
        _check(not (self.freeze_backbone and self.feature_cache and self.colour_constancy != "none"),
               "model.colour_constancy runs inside the model: with model.freeze_backbone set model.feature_cache=false")
        _check(bool(self.metadata_fields) and set(self.metadata_fields) <= {"age", "sex", "site"},
               f"model.metadata_fields must be a non-empty subset of age, sex, site, got {list(self.metadata_fields)}")


@dataclass
class StageConfig:
    """One stage of staged fine-tuning: which layers train, for how long, at what rate."""

    epochs: int = 1
    lr: float = 1e-3
    unfreeze: str = "all"  # head | last-block (alias last) | last-2-blocks | all; see lesionlab.training.unfreeze

    def __post_init__(self) -> None:
        _check(self.epochs >= 1, "train.stages[].epochs must be at least 1")
        _check(self.lr > 0, "train.stages[].lr must be positive")


@dataclass
class SpeedupConfig:
    """Opt-in speed-up methods for training steps (see ``lesionlab.training.speedups``); defaults are off."""

    progressive_resize: float = 1.0  # initial image-size scale, e.g. 0.5; grows linearly to 1 (1 = off)
    resize_until: float = 0.8  # fraction of training after which batches are full size
    selective_backprop: float = 1.0  # fraction of each batch back-propagated: its highest-loss samples (1 = off)
    backprop_until: float = 0.8  # fraction of training after which every sample is back-propagated again

    def __post_init__(self) -> None:
        _check(0.1 <= self.progressive_resize <= 1, "train.speedups.progressive_resize must lie in [0.1, 1]")
        _check(0 < self.selective_backprop <= 1, "train.speedups.selective_backprop must lie in (0, 1]")
        _check(0 < self.resize_until <= 1 and 0 < self.backprop_until <= 1,
               "train.speedups.resize_until and backprop_until must lie in (0, 1]")

    @property
    def active(self) -> bool:
        return self.progressive_resize < 1 or self.selective_backprop < 1


@dataclass
class MixConfig:
    """Mixup / CutMix on training batches (torchvision v2); alphas of 0 turn each off."""

    mixup: float = 0.0  # Beta(α, α) of mixup (Zhang et al. 2018), e.g. 0.2
    cutmix: float = 0.0  # Beta(α, α) of CutMix (Yun et al. 2019), e.g. 1.0
    prob: float = 1.0  # fraction of batches mixed

    def __post_init__(self) -> None:
        _check(self.mixup >= 0 and self.cutmix >= 0, "train.mix.mixup and train.mix.cutmix must be >= 0")
        _check(0 <= self.prob <= 1, "train.mix.prob must lie in [0, 1]")

    @property
    def active(self) -> bool:
        return (self.mixup > 0 or self.cutmix > 0) and self.prob > 0


@dataclass
class TrainConfig:
    """Optimisation, imbalance handling, augmentation and the Lightning trainer."""

    epochs: int = 60
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
    precision: str = "auto"  # auto: bf16-mixed where the CPU/GPU has fast bf16, else 32-true; or any Lightning value
    progress: bool = True
    max_time_minutes: float | None = None  # hard wall-clock budget for fitting
    ema_decay: float = 0.998  # exponential moving average of the weights; 0 disables it
    # Imbalance handling, schedules, augmentation parameters, staged fine-tuning (the defaults change nothing).
    effective_beta: float = 0.999  # β of class_weights=effective
    focal_gamma: float = 2.0  # loss=focal: focusing parameter γ
    focal_alpha: tuple[float, ...] | None = None  # loss=focal: per-class α; null = the class weights
    sampler: str = "random"  # random (shuffle) or balanced (class-balanced weighted sampling)
    undersample_cap: int | None = None  # keep at most this many training images per class (random, seeded)
    oversample: str = "none"  # none, duplicate or smote: grow each class to the largest (capped) class
    smote_space: str = "pixel"  # pixel (cached arrays) or feature (frozen-backbone embeddings, head training)
    smote_k: int = 5  # SMOTE nearest neighbours
    plateau_factor: float = 0.5  # scheduler=plateau: LR multiplier when the monitored metric stalls
    plateau_patience: int = 2  # scheduler=plateau: epochs without improvement before reducing
    augment_params: dict[str, Any] = field(default_factory=dict)  # override preset parameters, e.g. {degrees: 30}
    stages: tuple[StageConfig, ...] = ()  # staged fine-tuning; when set, replaces epochs/lr
    augment_on: str = "sample"  # sample: per image in the loader; batch: per-sample draws in batched ops on the device
    speedups: SpeedupConfig = field(default_factory=SpeedupConfig)
    mix: MixConfig = field(default_factory=MixConfig)
    layer_decay: float | None = None  # layer-wise LR decay (timm's groups): block k of K trains at lr * d^(K-k)
    # Trainer settings (flat for now; to move under train.trainer with the nested-config regrouping).
    logger: tuple[str, ...] = ("csv",)  # csv | tensorboard | mlflow | none, or a list: Lightning loggers in the run
    save_last: bool = True  # checkpoints/last.ckpt each epoch (weights, optimizer, RNG...): `train --resume`

    def __post_init__(self) -> None:
        if isinstance(self.logger, str):
            self.logger = (self.logger,)
        _check(self.layer_decay is None or 0 < self.layer_decay <= 1, "train.layer_decay must lie in (0, 1] or null")
        _check(not (self.mix.active and self.loss == "focal"),
               "train.mix (mixup/CutMix) makes soft targets, which train.loss=focal does not take; use loss=ce")
        _check(not (self.mix.active and self.speedups.selective_backprop < 1),
               "train.mix does not combine with train.speedups.selective_backprop")
        _check(self.focal_gamma >= 0, "train.focal_gamma must be >= 0")
        _check(self.focal_alpha is None or all(a >= 0 for a in self.focal_alpha),
               "train.focal_alpha values must be >= 0")
        _check(0 <= self.effective_beta < 1, "train.effective_beta must lie in [0, 1)")
        _check(self.undersample_cap is None or self.undersample_cap >= 1, "train.undersample_cap must be >= 1 or null")
        _check(self.smote_k >= 1, "train.smote_k must be at least 1")
        _check(0 < self.plateau_factor < 1, "train.plateau_factor must lie in (0, 1)")
        _check(self.plateau_patience >= 0, "train.plateau_patience must be >= 0")
        _check(self.epochs >= 1, "train.epochs must be at least 1")
        _check(self.batch_size >= 1, "train.batch_size must be at least 1")
        _check(self.lr > 0, "train.lr must be positive")
        _check(self.weight_decay >= 0, "train.weight_decay must be >= 0")
        _check(0 <= self.label_smoothing < 1, "train.label_smoothing must lie in [0, 1)")
        _check(self.patience >= 0, "train.patience must be >= 0")
        _check(0 <= self.ema_decay < 1, "train.ema_decay must lie in [0, 1) (0 disables EMA)")
        _check(self.augment_on in {"sample", "batch"}, "train.augment_on must be sample or batch")
        _check(not (self.stages and self.speedups.active),
               "train.speedups schedule one fit; they do not combine with staged fine-tuning (train.stages)")
        _check(self.monitor in {"val_bal_acc", "val_loss", "val_auc"},
               "train.monitor must be val_bal_acc, val_loss or val_auc")


@dataclass
class EvalConfig:
    """What the evaluation reports."""

    topk: tuple[int, ...] = (2, 3)  # top-k accuracies reported besides top-1
    batch_size: int = 256  # images per inference batch
    tta: str = "d4"  # test-time augmentation: none, flips, d4 or views joined by '+' (e.g. identity+hflip+rot90)
    calibrate: bool = True  # fit temperature scaling on the validation split and store it with the model
    ece_bins: int = 15  # bins of the expected calibration error (equal-width and equal-mass)
    specificities: tuple[float, ...] = (0.8, 0.9, 0.95)  # operating points: sensitivity at these specificities
    sensitivities: tuple[float, ...] = (0.9, 0.95)  # ... and specificity at these sensitivities
    triage_sensitivity: float | None = 0.9  # priority-1 class thresholds stored with the model (null: none)
    gradcam_images: int = 70  # test images explained with Grad-CAM in the report (0: no Grad-CAM section)
    gradcam_method: str = "gradcam"  # gradcam or gradcam++
    mask_dir: str | None = None  # lesion masks for CAM-in-lesion; default: <data root>/<dataset>/masks_200x150
    test: bool = True  # false: stop after validation (recipe searches), the test split stays untouched
    ood: str = "knn"  # OOD detector fitted on training features (knn, mahalanobis, energy; none: no detector)
    ood_coverage: float = 0.975  # share of validation lesions the OOD threshold lets through

    def __post_init__(self) -> None:
        _check(self.ece_bins >= 1, "eval.ece_bins must be at least 1")
        _check(all(0 < v < 1 for v in (*self.specificities, *self.sensitivities)),
               "eval.specificities and eval.sensitivities must lie in (0, 1)")
        _check(self.triage_sensitivity is None or 0 < self.triage_sensitivity < 1,
               "eval.triage_sensitivity must lie in (0, 1) or be null")
        _check(self.gradcam_images >= 0, "eval.gradcam_images must be >= 0")
        _check(self.gradcam_method in ("gradcam", "gradcam++"), "eval.gradcam_method must be gradcam or gradcam++")
        _check(self.ood in ("none", "mahalanobis", "energy", "knn"), "eval.ood: mahalanobis, energy, knn or none")
        _check(0 < self.ood_coverage < 1, "eval.ood_coverage must lie in (0, 1)")


@dataclass
class ExperimentConfig:
    """Everything a run needs; written to ``config.yaml`` in the run directory."""

    name: str = "default"  # run name: the run directory is <output_dir>/<name>-<time>
    output_dir: str = "runs"  # parent folder of the run directories
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    task: str = "diagnosis"  # diagnosis (the dataset's classes or data.taxonomy) | triage (3 priority levels)

    def __post_init__(self) -> None:
        _check(self.task in TASKS, f"task must be one of {', '.join(TASKS)}, got {self.task!r}")
        if self.task == "triage":
            _check(self.data.taxonomy in (None, "triage"),
                   f"task=triage trains on the triage taxonomy; data.taxonomy={self.data.taxonomy!r} contradicts it")
            self.data.taxonomy = "triage"


#: ``task`` values: what the classifier predicts.
TASKS = ("diagnosis", "triage")


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


def load_typed_config(cls: type[T], path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> T:
    """Like :func:`load_config` for any config dataclass (``PretrainConfig``, ``DistillConfig``, ...)."""
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
    return from_dict(cls, data)


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> ExperimentConfig:
    """Defaults ← YAML file ← ``key=value`` overrides, validated."""
    return load_typed_config(ExperimentConfig, path, overrides)


def save_config(cfg: Any, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
