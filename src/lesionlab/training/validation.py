"""Check every registered component name of a config before any data is loaded or any model trains."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from lesionlab.config import ConfigError, DataConfig, EvalConfig, ExperimentConfig, ModelConfig, TrainConfig
from lesionlab.registry import UnknownNameError


def check_train_names(t: TrainConfig, where: str = "train") -> None:
    """Loss, class weights, optimizer, schedule, sampler, oversampler, augmentation preset, unfreeze levels,
    loggers."""
    from lesionlab.data.transforms import augmentation_params
    from lesionlab.training.loggers import check_logger_names
    from lesionlab.training.losses import CLASS_WEIGHTS, LOSSES
    from lesionlab.training.optim import OPTIMIZERS, SCHEDULERS
    from lesionlab.training.resampling import OVERSAMPLERS, SMOTE_SPACES
    from lesionlab.training.samplers import SAMPLERS
    from lesionlab.training.unfreeze import UNFREEZE

    for key, registry, name in ((f"{where}.loss.name", LOSSES, t.loss.name),
                                (f"{where}.loss.class_weights", CLASS_WEIGHTS, t.loss.class_weights),
                                (f"{where}.optimizer.name", OPTIMIZERS, t.optimizer.name),
                                (f"{where}.schedule.name", SCHEDULERS, t.schedule.name),
                                (f"{where}.sampling.sampler", SAMPLERS, t.sampling.sampler),
                                (f"{where}.sampling.oversample", OVERSAMPLERS, t.sampling.oversample),
                                *((f"{where}.stages[{i}].unfreeze", UNFREEZE, s.unfreeze)
                                  for i, s in enumerate(t.stages))):
        _lookup(key, registry, name)
    augmentation_params(t.augmentation.preset, t.augmentation.params)
    if t.sampling.smote_space not in SMOTE_SPACES:
        raise ConfigError(f"{where}.sampling.smote_space must be one of {SMOTE_SPACES}, "
                          f"got {t.sampling.smote_space!r}")
    try:
        check_logger_names(t.trainer.logger)
    except UnknownNameError as exc:
        raise UnknownNameError(f"{where}.trainer.logger: {exc}") from None
    except ValueError as exc:
        raise ConfigError(f"{where}.trainer.logger: {exc}") from None


def check_model_names(m: ModelConfig, where: str = "model") -> None:
    """Backbone (alias or timm name) and head."""
    from lesionlab.models.backbones import resolve_backbone
    from lesionlab.models.heads import HEADS

    resolve_backbone(m.backbone)
    _lookup(f"{where}.head", HEADS, m.head)


def check_weights(cfg: Any, where: str = "") -> None:
    """Where a command is about to train: each backbone's ImageNet weights can be had (offline package, local cache or
    a reachable hub) and each ``weights`` file exists, so an offline machine fails before any data is read."""
    from lesionlab.models.backbones import resolve_backbone
    from lesionlab.models.pretrained import check_weights_available

    prefix = f"{where}." if where else ""
    for attr in ("model", "student"):
        m = getattr(cfg, attr, None)
        if not isinstance(m, ModelConfig):
            continue
        if m.weights is None:
            check_weights_available(resolve_backbone(m.backbone), m.pretrained)
        elif not Path(m.weights).is_file():
            raise ConfigError(f"{prefix}{attr}.weights: file not found: {m.weights}")
    if isinstance(getattr(cfg, "experiment", None), ExperimentConfig):
        check_weights(cfg.experiment, f"{prefix}experiment")


def check_eval_names(e: EvalConfig, where: str = "eval") -> None:
    """The test-time augmentation policy."""
    from lesionlab.inference.tta import get_tta

    try:
        get_tta(e.tta)
    except (KeyError, ValueError) as exc:
        raise ConfigError(f"{where}.tta: {exc}") from None


def check_data_names(d: DataConfig, where: str = "data") -> None:
    """The canonical acquisition chain (``data.canonical``)."""
    from lesionlab.data.canonical import CANONICAL

    if d.canonical is not None:
        _lookup(f"{where}.canonical", CANONICAL, d.canonical)


def check_component_names(cfg: Any, where: str = "") -> None:
    """Look up each named component of ``cfg`` (an :class:`ExperimentConfig`, or a pretraining / distillation
    config holding ``train``, ``model``, ``student``, ``eval`` or ``experiment`` sections); an unknown name raises
    a :class:`ConfigError` that lists the valid ones."""
    prefix = f"{where}." if where else ""
    # cheapest imports first, so a wrong eval.tta is answered before the training and model registries load
    checks: tuple[tuple[str, type, Callable[[Any, str], None]], ...] = (
        ("eval", EvalConfig, check_eval_names), ("data", DataConfig, check_data_names),
        ("train", TrainConfig, check_train_names),
        ("model", ModelConfig, check_model_names), ("student", ModelConfig, check_model_names),
        ("experiment", ExperimentConfig, check_component_names))
    for attr, kind, check in checks:
        section = getattr(cfg, attr, None)
        if isinstance(section, kind):
            check(section, f"{prefix}{attr}")


def _lookup(key: str, registry: Any, name: str) -> None:
    """``registry.get(name)``, its error prefixed with the config key that named it."""
    try:
        registry.get(name)
    except UnknownNameError as exc:
        raise UnknownNameError(f"{key}: {exc}") from None
