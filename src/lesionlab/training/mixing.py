"""Mixup and CutMix on training batches (torchvision ``transforms.v2``): soft targets for the loss."""

from __future__ import annotations

import torch
from torchvision.transforms import v2

from lesionlab.config import MixConfig

MixFn = v2.Transform


def batch_mixer(cfg: MixConfig, num_classes: int) -> v2.Transform | None:
    """``v2.MixUp`` / ``v2.CutMix`` (one of them at random per batch when both are on), applied with probability
    ``cfg.prob``; None when mixing is off."""
    if not cfg.active:
        return None
    choices: list[v2.Transform] = []
    if cfg.mixup > 0:
        choices.append(v2.MixUp(alpha=cfg.mixup, num_classes=num_classes))
    if cfg.cutmix > 0:
        choices.append(v2.CutMix(alpha=cfg.cutmix, num_classes=num_classes))
    mix = choices[0] if len(choices) == 1 else v2.RandomChoice(choices)
    return mix if cfg.prob >= 1 else v2.RandomApply([mix], p=cfg.prob)


def mix_batch(mixer: v2.Transform | None, x: torch.Tensor, targets: torch.Tensor,
              num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images, loss targets)``: mixed images with soft targets, or the batch unchanged (hard targets)."""
    if mixer is None:
        return x, targets
    mixed, soft = mixer(x, targets)
    if soft.ndim == 1:  # RandomApply skipped this batch: one-hot, so every batch's loss sees the same target form
        soft = torch.nn.functional.one_hot(soft, num_classes).to(x.dtype if x.is_floating_point() else torch.float32)
    return mixed.contiguous(memory_format=torch.channels_last), soft


__all__ = ["batch_mixer", "mix_batch"]
