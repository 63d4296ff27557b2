"""Check every registered component name of a config before any data is loaded or any model trains."""

from __future__ import annotations

from lesionlab.config import ConfigError, ExperimentConfig


def check_component_names(cfg: ExperimentConfig) -> None:
    """Look up each named component; an unknown name raises the registry's error listing the valid ones."""
    from lesionlab.data.transforms import augmentation_params
    from lesionlab.inference.tta import get_tta
    from lesionlab.models.backbones import resolve_backbone
    from lesionlab.models.heads import HEADS
    from lesionlab.training.loggers import check_logger_names
    from lesionlab.training.losses import CLASS_WEIGHTS, LOSSES
    from lesionlab.training.optim import OPTIMIZERS, SCHEDULERS
    from lesionlab.training.resampling import OVERSAMPLERS, SMOTE_SPACES
    from lesionlab.training.samplers import SAMPLERS
    from lesionlab.training.unfreeze import UNFREEZE

    t = cfg.train
    LOSSES.get(t.loss)
    CLASS_WEIGHTS.get(t.class_weights)
    OPTIMIZERS.get(t.optimizer)
    SCHEDULERS.get(t.scheduler)
    SAMPLERS.get(t.sampler)
    OVERSAMPLERS.get(t.oversample)
    augmentation_params(t.augment, t.augment_params)
    if t.smote_space not in SMOTE_SPACES:
        raise ConfigError(f"train.smote_space must be one of {SMOTE_SPACES}, got {t.smote_space!r}")
    for stage in t.stages:
        UNFREEZE.get(stage.unfreeze)
    resolve_backbone(cfg.model.backbone)
    HEADS.get(cfg.model.head)
    try:
        check_logger_names(t.logger)
    except (KeyError, ValueError) as exc:
        raise ConfigError(f"train.logger: {exc}") from None
    try:
        get_tta(cfg.eval.tta)
    except (KeyError, ValueError) as exc:
        raise ConfigError(f"eval.tta: {exc}") from None
