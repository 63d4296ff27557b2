"""Colour constancy inside the model: Shades of Gray (Finlayson & Trezzi 2004), as used by the ISIC 2018/2019
winners (Barata et al. 2015 for dermoscopy), so training, evaluation, the predictor and ONNX share one definition.

The module sits in front of the backbone and works on normalised input: it undoes ``(x - mean) / std``, divides
each channel by its Minkowski p-norm illuminant estimate (scaled to keep the mean grey level), clips to [0, 1] and
normalises again. Mean and std are buffers, so a saved model restores them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from lesionlab.registry import Registry

COLOUR_CONSTANCY: Registry[Callable[[], nn.Module | None]] = Registry("colour-constancy method")


class ShadesOfGray(nn.Module):
    """Per-image white balance with the Minkowski ``p``-norm illuminant estimate (p=6 in the dermoscopy papers)."""

    def __init__(self, p: float = 6.0, mean: Sequence[float] = (0.5,) * 3, std: Sequence[float] = (0.5,) * 3) -> None:
        super().__init__()
        self.p = float(p)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def set_normalisation(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self.mean.copy_(torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.std.copy_(torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        raw = (x.float() * self.std + self.mean).clamp(0, 1)
        illuminant = raw.pow(self.p).mean(dim=(-2, -1), keepdim=True).pow(1.0 / self.p).clamp_min(1e-6)
        gain = illuminant.mean(dim=1, keepdim=True) / illuminant
        balanced = (raw * gain).clamp(0, 1)
        return ((balanced - self.mean) / self.std).to(dtype)


COLOUR_CONSTANCY.add("none", lambda: None, help="the image's own colours")
COLOUR_CONSTANCY.add("shades-of-gray", lambda: ShadesOfGray(6.0),
                     help="Shades of Gray white balance, p=6 (ISIC 2018/2019 winners)")


def create_colour_constancy(name: str) -> nn.Module | None:
    """The registered colour-constancy module (None for ``none``)."""
    return COLOUR_CONSTANCY.get(name)()


__all__ = ["COLOUR_CONSTANCY", "ShadesOfGray", "create_colour_constancy"]
