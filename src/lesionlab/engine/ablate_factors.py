"""What removing each ablation factor means: a registry of name → (present in the config?, overrides without it).

Kept free of heavy imports so ``lesionlab ablate --help`` can list the factors quickly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from lesionlab.config import ConfigError, ExperimentConfig
from lesionlab.registry import Registry


@dataclass(frozen=True)
class Factor:
    """``present(cfg)`` says whether the full config uses the factor; ``remove(cfg)`` the overrides without it."""

    present: Callable[[ExperimentConfig], bool]
    remove: Callable[[ExperimentConfig], list[str]]
    meaning: str


ABLATIONS: Registry[Factor] = Registry("ablation factor")


def _factor(name: str, meaning: str, present: Callable[[ExperimentConfig], bool],
            remove: Callable[[ExperimentConfig], list[str]]) -> None:
    ABLATIONS.add(name, Factor(present, remove, meaning), help=meaning)


def _remove_dropout(c: ExperimentConfig) -> list[str]:
    from torch import nn

    from lesionlab.models.heads import create_head

    head = create_head(c.model.head, 8, 2, 0.0)
    if any(isinstance(m, nn.Dropout) and m.p > 0 for m in head.modules()):
        raise ConfigError(f"model.head={c.model.head} has a fixed dropout rate, so model.drop_rate=0 would not remove "
                          "dropout; ablate dropout with a head that follows model.drop_rate (e.g. linear)")
    return ["model.drop_rate=0", "model.drop_path_rate=0"]


_factor("dropout", "model.drop_rate=0 and model.drop_path_rate=0 (heads with a fixed dropout rate are refused)",
        lambda c: c.model.drop_rate > 0 or c.model.drop_path_rate > 0, _remove_dropout)
_factor("augment", "train.augmentation.preset=none (no training augmentation)",
        lambda c: c.train.augmentation.preset != "none",
        lambda c: ["train.augmentation.preset=none", "train.augmentation.params={}"])
_factor("class_weights", "train.loss.class_weights=none (focal α then defaults to 1 unless given explicitly)",
        lambda c: c.train.loss.class_weights != "none", lambda c: ["train.loss.class_weights=none"])
_factor("focal", "train.loss.name=ce (cross-entropy with the same class weights)",
        lambda c: c.train.loss.name == "focal", lambda c: ["train.loss.name=ce"])
_factor("label_smoothing", "train.loss.label_smoothing=0", lambda c: c.train.loss.label_smoothing > 0,
        lambda c: ["train.loss.label_smoothing=0"])
_factor("ema", "train.ema_decay=0 (no weight averaging)", lambda c: c.train.ema_decay > 0,
        lambda c: ["train.ema_decay=0"])
_factor("sampler", "train.sampling.sampler=random (no class-balanced sampling)",
        lambda c: c.train.sampling.sampler != "random", lambda c: ["train.sampling.sampler=random"])
_factor("resampling", "train.sampling.undersample_cap=null and train.sampling.oversample=none",
        lambda c: c.train.sampling.undersample_cap is not None or c.train.sampling.oversample != "none",
        lambda c: ["train.sampling.undersample_cap=null", "train.sampling.oversample=none"])
_factor("staged", "train.stages=[] (one fit of all layers for train.epochs at train.optimizer.lr)",
        lambda c: bool(c.train.stages), lambda c: ["train.stages=[]"])
_factor("tta", "eval.tta=none (no test-time augmentation)", lambda c: c.eval.tta != "none",
        lambda c: ["eval.tta=none"])


_factor("gap", "model.global_pool=max: global average pooling replaced by global max pooling (a classifier needs a "
        "fixed-length vector, so GAP is swapped rather than dropped)",
        lambda c: c.model.global_pool == "avg", lambda c: ["model.global_pool=max"])


def parse_factors(text: str | Sequence[str]) -> list[str]:
    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else text) if n.strip()]
    if not names:
        raise ConfigError("--factors needs at least one factor, e.g. dropout,augment,class_weights,focal")
    if len(set(names)) != len(names):
        raise ConfigError(f"--factors names a factor twice: {names}")
    for n in names:
        ABLATIONS.get(n)
    return names
