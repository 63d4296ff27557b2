"""Opt-in speed-up methods: fewer FLOPs per training image at the same backbone, final size, batch and epochs.

Both are known methods (MosaicML Composer ships them under these names) and both only touch training steps;
validation, evaluation and the exported model always see full-size images and every sample.

* **Progressive resizing** (``train.speedups.progressive_resize``): batches are downscaled on the device to a
  size that grows linearly from ``progressive_resize × image_size`` to the full size, reached at
  ``resize_until`` of training (a multiple of 8 px, so the convolution kernels see few distinct shapes, and never
  below the backbone's total stride, e.g. 32 px for a ResNet).
* **Selective backprop** (``train.speedups.selective_backprop``): a no-grad forward pass scores the whole
  batch; only the ``selective_backprop`` fraction with the highest cross-entropy (unweighted: how wrong the model
  is, whatever the training loss) is back-propagated (Jiang et al. 2019, "Accelerating deep learning by focusing
  on the biggest losers"), until ``backprop_until`` of training.

Both follow the fit's own step count, so they refuse ``train.stages``; a run cut short by early stopping or
``train.max_time_minutes`` may end before the full size is reached.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from lesionlab.config import SpeedupConfig


def smallest_size(model: nn.Module, default: int = 32) -> int:
    """The backbone's total stride (timm ``feature_info``): below it the last feature map is a padded 1×1 and
    training at that size degenerates (diverges, in bf16), so progressive resizing never goes smaller."""
    info = getattr(getattr(model, "backbone", model), "feature_info", None)
    try:
        return max(int(f["reduction"]) for f in info or ())
    except (TypeError, KeyError, ValueError):
        return default


def progressive_size(full: int, cfg: SpeedupConfig, progress: float, multiple: int = 8, minimum: int = 8) -> int:
    """The training image size at ``progress`` ∈ [0, 1] of training (``full`` once the ramp is over), a multiple of
    ``multiple`` and at least ``minimum`` px (never more than ``full``)."""
    if cfg.progressive_resize >= 1 or progress >= cfg.resize_until:
        return full
    scale = cfg.progressive_resize + (1 - cfg.progressive_resize) * max(0.0, progress) / cfg.resize_until
    size = int(round(full * scale / multiple) * multiple)
    return min(full, max(minimum, multiple, size))


def resize_batch(x: torch.Tensor, size: int) -> torch.Tensor:
    """Square float batch ``x`` resized to ``size`` px (antialiased bilinear), kept channels-last."""
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    out = F.interpolate(x, size=(size, size), mode="bilinear", antialias=size < x.shape[-1], align_corners=False)
    return out.contiguous(memory_format=torch.channels_last)


def backprop_fraction(cfg: SpeedupConfig, progress: float) -> float:
    """The fraction of each batch to back-propagate at ``progress`` (1 outside the selective-backprop window)."""
    return cfg.selective_backprop if progress < cfg.backprop_until else 1.0


def hardest(logits: torch.Tensor, targets: torch.Tensor, keep: float) -> torch.Tensor:
    """Indices of the ``keep`` fraction of samples with the highest cross-entropy (at least 2, for BatchNorm)."""
    n = len(targets)
    k = min(n, max(2, round(keep * n)))
    losses = F.cross_entropy(logits.float(), targets, reduction="none")
    return losses.topk(k).indices


@contextmanager
def running_stats_frozen(model: nn.Module) -> Iterator[None]:
    """BatchNorm layers of ``model`` normalise with batch statistics but leave their running statistics unchanged
    (momentum 0 inside the block; autograd-safe, unlike restoring the buffers afterwards)."""
    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    saved = [(m, m.momentum, m.num_batches_tracked.clone()) for m in layers]
    for m in layers:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum, tracked in saved:
            m.momentum = momentum
            m.num_batches_tracked.copy_(tracked)


def select_for_backprop(score: Callable[[torch.Tensor, Sequence[torch.Tensor]], torch.Tensor], x: torch.Tensor,
                        targets: torch.Tensor, extra: Sequence[torch.Tensor], keep: float,
                        ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor], torch.Tensor]:
    """Score the batch with ``score`` (the model in train mode, no gradients) and keep its hardest ``keep`` fraction.

    The scoring pass is an ordinary train-mode forward of the whole batch, so BatchNorm running statistics follow
    the data as without selection; the caller runs the training pass on the kept samples under
    :func:`running_stats_frozen`, so the hard subset does not pull them towards itself. Returns the kept
    ``(x, targets, extra)`` and the no-grad logits of the whole batch (for the epoch metrics).
    """
    with torch.no_grad():
        logits = score(x, extra)
    idx = hardest(logits, targets, keep)
    return x[idx], targets[idx], [e[idx] for e in extra], logits


__all__ = ["backprop_fraction", "hardest", "progressive_size", "resize_batch", "running_stats_frozen",
           "select_for_backprop", "smallest_size"]
