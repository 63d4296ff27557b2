"""The ``last-stage`` unfreeze level for staged fine-tuning: the backbone's last *stage of blocks* and what follows.

timm's coarse layer groups put trailing layers (ConvNeXt's final norm, EfficientNet's conv head) in a group of
their own after the last stage, so the ``last`` level of :mod:`lesionlab.training.staged` opens only those for
ConvNeXt (a LayerNorm). The VAE study unfroze the encoder's last stage, which is this level. Registered in the same
``UNFREEZE`` registry, so ``train.stages[].unfreeze: last-stage`` works anywhere once this module is imported.
"""

from __future__ import annotations

import re

from torch import nn

from lesionlab.config import ConfigError
from lesionlab.training.staged import UNFREEZE, backbone_groups

LEVEL = "last-stage"


def _block_patterns(backbone: nn.Module) -> list[re.Pattern[str]]:
    blocks = backbone.group_matcher(coarse=True).get("blocks")
    if blocks is None:
        raise ConfigError(f"{type(backbone).__name__}'s timm group_matcher names no blocks; use unfreeze=last")
    items = [blocks] if isinstance(blocks, str) else [b[0] if isinstance(b, tuple | list) else b for b in blocks]
    return [re.compile(p) for p in items]


def frozen_for_last_stage(backbone: nn.Module) -> set[str]:
    """Names of the backbone parameters before its last group of blocks (those stay frozen)."""
    groups = backbone_groups(backbone)
    patterns = _block_patterns(backbone)
    block_groups = [gid for gid, names in groups.items() if any(p.match(n) for p in patterns for n in names)]
    if not block_groups:
        raise ConfigError(f"no block group found in {type(backbone).__name__}; use unfreeze=last")
    last = max(block_groups)
    return {name for gid, names in groups.items() if gid < last for name in names}


if LEVEL not in UNFREEZE:
    UNFREEZE.add(LEVEL, frozen_for_last_stage,
                 help="the backbone's last stage of blocks and every layer after it (final norm, conv head), + head")
