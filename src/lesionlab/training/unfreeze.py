"""Unfreeze levels of staged fine-tuning, all defined here: which backbone parameters train in a stage.

Layer groups come from timm's ``group_matcher`` (``timm.models.group_parameters``), never from name matching of our
own. A *block group* is a group of the matcher's ``blocks`` patterns holding at least one conv/linear weight (a
matcher given as a function, like Inception-ResNet-v2's, is judged by the weights alone): trailing groups that hold
only a norm (ConvNeXt's ``head.norm``, DenseNet's ``norm5``) are not blocks, they follow the last block.

``last-block`` opens the last block group and everything after it, on every family of the zoo; ``last`` and
``last-stage`` are aliases of it (``last`` once meant timm's last coarse group, which on ConvNeXt and DenseNet is a
single norm layer). An attention wrapper (``model.attention``) is grouped by its trunk; its attention block follows
the trunk, so it trains whenever any trunk layer does.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass

from timm.models import group_parameters
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from lesionlab.config import ConfigError
from lesionlab.registry import Registry

logger = logging.getLogger(__name__)

#: unfreeze level → names of the *backbone* parameters that stay frozen.
UNFREEZE: Registry[Callable[[nn.Module], set[str]]] = Registry("unfreeze level")


def _trunk(backbone: nn.Module) -> tuple[nn.Module, str]:
    """The timm model whose groups count, and the prefix of its parameter names inside ``backbone``."""
    trunk = getattr(backbone, "trunk", None)
    return (trunk, "trunk.") if isinstance(trunk, nn.Module) else (backbone, "")


def backbone_groups(backbone: nn.Module) -> dict[int, list[str]]:
    """timm's coarse layer groups of a backbone: group id (stem = 0, ..., last block) → parameter names."""
    trunk, prefix = _trunk(backbone)
    matcher = getattr(trunk, "group_matcher", None)
    if matcher is None:
        raise ConfigError(f"{type(trunk).__name__} has no timm group_matcher; staged fine-tuning needs one")
    return {gid: [prefix + n for n in names] for gid, names in group_parameters(trunk, matcher(coarse=True)).items()}


def _block_patterns(trunk: nn.Module) -> list[re.Pattern[str]] | None:
    spec = trunk.group_matcher(coarse=True)
    blocks = spec.get("blocks") if isinstance(spec, dict) else None
    if blocks is None:
        return None
    items = [blocks] if isinstance(blocks, str) else [b[0] if isinstance(b, tuple | list) else b for b in blocks]
    return [re.compile(p) for p in items]


def block_groups(backbone: nn.Module) -> list[int]:
    """Ids of the groups that are blocks (see the module docstring), in order."""
    trunk, prefix = _trunk(backbone)
    groups = backbone_groups(backbone)
    params = dict(backbone.named_parameters())
    patterns = _block_patterns(trunk)

    def is_block(names: list[str]) -> bool:
        weights = [n for n in names if params[n].ndim >= 2]
        if patterns is None:
            return bool(weights)
        return any(p.match(n.removeprefix(prefix)) for p in patterns for n in weights)

    ids = [gid for gid in sorted(groups) if is_block(groups[gid])]
    if not ids:
        raise ConfigError(f"{type(trunk).__name__}'s timm groups hold no block of conv/linear layers; use "
                          "unfreeze=head or all")
    return ids


def frozen_before_block(backbone: nn.Module, k: int) -> set[str]:
    """Backbone parameters before the ``k``-th last block group (those stay frozen)."""
    groups = backbone_groups(backbone)
    blocks = block_groups(backbone)
    first_open = blocks[-min(k, len(blocks))]
    return {name for gid, names in groups.items() if gid < first_open for name in names}


@UNFREEZE.register("head", help="backbone frozen; the head (and any non-backbone module) trains")
def _frozen_for_head(backbone: nn.Module) -> set[str]:
    return {name for name, _ in backbone.named_parameters()}


def _last_block(backbone: nn.Module) -> set[str]:
    return frozen_before_block(backbone, 1)


UNFREEZE.add("last-block", _last_block,
             help="the backbone's last block group (timm group_matcher) and every layer after it, + head")
UNFREEZE.add("last", _last_block, help="alias of last-block")
UNFREEZE.add("last-stage", _last_block, help="alias of last-block")


@UNFREEZE.register("last-2-blocks", help="the backbone's last two block groups and every layer after them, + head")
def _last_two_blocks(backbone: nn.Module) -> set[str]:
    return frozen_before_block(backbone, 2)


@UNFREEZE.register("all", help="every layer trains")
def _frozen_for_all(backbone: nn.Module) -> set[str]:
    return set()


@dataclass(frozen=True)
class FreezeSummary:
    """Parameter counts of one level on one model (``backbone_trainable`` counts the opened backbone layers)."""

    level: str
    trainable: int
    frozen: int
    backbone_trainable: int
    frozen_batchnorm: tuple[nn.Module, ...]


def apply_unfreeze(model: nn.Module, level: str) -> FreezeSummary:
    """Set ``requires_grad`` for ``level`` on a classifier with a ``.backbone`` and return what is frozen.

    Warns when a level other than ``head`` opens no conv/linear weight of the backbone (nothing beyond the head, or
    only norm layers): such a stage trains little more than the head.
    """
    backbone = getattr(model, "backbone", None)
    if backbone is None:
        raise ConfigError("staged fine-tuning needs a model with a .backbone (a LesionLab classifier)")
    frozen_names = UNFREEZE.get(level)(backbone)
    for p in model.parameters():
        p.requires_grad_(True)
    for name, p in backbone.named_parameters():
        if name in frozen_names:
            p.requires_grad_(False)
    bns = tuple(m for m in backbone.modules() if isinstance(m, _BatchNorm) and _is_frozen(m, level))
    n_frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    opened = [(n, p) for n, p in backbone.named_parameters() if p.requires_grad]
    if level.lower() != "head" and not any(p.ndim >= 2 for _, p in opened):
        logger.warning("unfreeze=%s opens nothing beyond the head on %s (%d backbone parameters, no conv/linear "
                       "weight): use last-block or all", level, type(_trunk(backbone)[0]).__name__,
                       sum(p.numel() for _, p in opened))
    return FreezeSummary(level, n_train, n_frozen, sum(p.numel() for _, p in opened), bns)


def _is_frozen(module: nn.Module, level: str) -> bool:
    params = list(module.parameters(recurse=False))
    return any(not p.requires_grad for p in params) if params else level == "head"


#: The distinct levels, shallowest first (the others are aliases).
LEVELS = ("head", "last-block", "last-2-blocks", "all")


def unfreeze_table(model: nn.Module, levels: tuple[str, ...] = LEVELS) -> dict[str, int]:
    """Trainable parameters per level; leaves every parameter trainable."""
    try:
        return {level: apply_unfreeze(model, level).trainable for level in levels}
    finally:
        for p in model.parameters():
            p.requires_grad_(True)
