"""The acquisition chain as augmentation: what a camera, a resize and a JPEG encoder do to a lesion's pixels.

The same lesion arrives at full resolution from one clinic and as a small, re-encoded copy from another. A model
trained on one such chain learns its resampling and compression artifacts (HAM10000's 200x150 files) and changes its
answer on another. :class:`AcquisitionChain` draws, per image, the steps of a random chain on a uint8 ``(3, H, W)``
tensor and returns the same size:

1. optics: Gaussian blur (probability ``blur_p``, sigma up to ``blur_sigma`` px);
2. sensor: Gaussian noise (probability ``noise_p``, std up to ``noise_std`` of the 0-255 range);
3. resolution: down-sampling by a factor in ``scale`` with a random filter (nearest, bilinear, bicubic, with or
   without antialiasing) and back up with bilinear or bicubic;
4. compression: JPEG re-encoding at a quality in ``jpeg_quality`` (probability ``jpeg_p``).

The whole chain runs with probability ``p`` (``train.augmentation.params.acquisition``), so some images stay as
they are.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

#: Down-sampling filters: (interpolation, antialias); the way other software resizes varies exactly like this.
DOWN_FILTERS = ((v2.InterpolationMode.NEAREST_EXACT, False), (v2.InterpolationMode.BILINEAR, False),
                (v2.InterpolationMode.BILINEAR, True), (v2.InterpolationMode.BICUBIC, False),
                (v2.InterpolationMode.BICUBIC, True))
UP_FILTERS = (v2.InterpolationMode.BILINEAR, v2.InterpolationMode.BICUBIC)


@dataclass(frozen=True)
class AcquisitionParams:
    """Ranges of the random acquisition chain (see the module docstring)."""

    p: float = 0.8
    scale: tuple[float, float] = (0.3, 1.0)
    jpeg_p: float = 0.8
    jpeg_quality: tuple[int, int] = (30, 95)
    blur_p: float = 0.3
    blur_sigma: float = 1.2
    noise_p: float = 0.3
    noise_std: float = 0.03


def uniform(lo: float, hi: float) -> float:
    """One draw from U(lo, hi) on torch's generator (so ``torch.manual_seed`` repeats an augmentation)."""
    return lo + (hi - lo) * float(torch.rand(()))


def chance(p: float) -> bool:
    """True with probability ``p`` (never for p <= 0), on torch's generator."""
    return p > 0 and float(torch.rand(())) < p


def _pick(options: tuple) -> Any:
    return options[int(torch.randint(len(options), ()))]


class AcquisitionChain(torch.nn.Module):
    """A random acquisition chain per call on a uint8 ``(3, H, W)`` tensor (same shape and dtype out)."""

    def __init__(self, params: AcquisitionParams | None = None) -> None:
        super().__init__()
        self.params = params or AcquisitionParams()

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        a = self.params
        if not chance(a.p):
            return img
        h, w = img.shape[-2:]
        if chance(a.blur_p):
            sigma = uniform(0.2, a.blur_sigma)
            kernel = 2 * math.ceil(2 * sigma) + 1
            img = TF.gaussian_blur(img, [kernel, kernel], [sigma, sigma])
        if chance(a.noise_p):
            noise = torch.randn(img.shape) * (uniform(0.0, a.noise_std) * 255.0)
            img = (img.float() + noise).round_().clamp_(0, 255).to(torch.uint8)
        s = uniform(*a.scale)
        small = (max(8, round(h * s)), max(8, round(w * s)))
        if small != (h, w):
            mode, antialias = _pick(DOWN_FILTERS)
            img = TF.resize(img, list(small), interpolation=mode, antialias=antialias)
            img = TF.resize(img, [h, w], interpolation=_pick(UP_FILTERS), antialias=False)
        if chance(a.jpeg_p):
            quality = round(uniform(*a.jpeg_quality))
            img = jpeg_round_trip(img, quality)
        return img


def jpeg_round_trip(img: torch.Tensor, quality: int) -> torch.Tensor:
    """One JPEG encode + decode (Pillow, as most software saves JPEGs) of a uint8 ``(3, H, W)`` tensor."""
    buffer = io.BytesIO()
    Image.fromarray(img.permute(1, 2, 0).numpy()).save(buffer, format="JPEG", quality=int(quality))
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return torch.from_numpy(np.array(decoded.convert("RGB"))).permute(2, 0, 1).contiguous()


def rescale(img: torch.Tensor, factor: float) -> torch.Tensor:
    """Down-sample a uint8 ``(3, H, W)`` tensor by ``factor`` (antialiased bicubic) and back (bilinear)."""
    h, w = img.shape[-2:]
    small = TF.resize(img, [max(8, round(h * factor)), max(8, round(w * factor))],
                      interpolation=v2.InterpolationMode.BICUBIC, antialias=True)
    up = F.interpolate(small[None].float(), size=(h, w), mode="bilinear", align_corners=False)[0]
    return up.round_().clamp_(0, 255).to(torch.uint8)
