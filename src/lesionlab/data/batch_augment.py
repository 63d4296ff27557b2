"""Augmentation of whole uint8 batches on the device, every sample with its own random draw.

``train.augmentation.mode: batch`` moves the preset's augmentation (:data:`lesionlab.data.transforms.AUGMENT_PARAMS`)
out of the per-image loader into a few batched tensor ops run where the model runs (the GPU, when there is one):

* flips and 90° rotations are index operations on the uint8 batch (no float copy, exact);
* random resized crop, rotation, shift and zoom compose into one affine map per sample and one ``grid_sample``
  (bilinear, where ``v2.RandomAffine`` defaults to nearest; black outside the image, as v2) on square images;
* brightness, contrast, saturation and hue are per-sample blends, applied in that fixed order (``v2.ColorJitter``
  shuffles the order); the hue shift is a rotation of the chroma plane in YIQ space (the approximation DALI and
  kornia-style GPU pipelines use), not an HSV round trip;
* cutout zeroes one rectangle per chosen sample (a box larger than the image is clipped, where v2 redraws).

The output is uint8 again, so :func:`lesionlab.data.transforms.to_model_input` stays the one normalisation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lesionlab.config import ConfigError, TrainConfig
from lesionlab.data.transforms import augmentation_params

_ERASE_RATIO = (0.3, 3.3)  # v2.RandomErasing's default aspect-ratio range
_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ_INV = torch.linalg.inv(_YIQ)  # once, on the CPU: no inverse (and no device sync) per batch
_GRAY = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale weights


class BatchAugment(nn.Module):
    """Apply augmentation ``params`` (a full preset parameter set) to ``(B, 3, H, W)`` uint8 batches."""

    def __init__(self, params: Mapping[str, Any]) -> None:
        super().__init__()
        self.p = dict(params)
        if self.p.get("policy"):
            raise ConfigError(f"train.augmentation.params.policy={self.p['policy']!r} runs per image: use "
                              "train.augmentation.mode=sample")
        if self.p.get("acquisition"):
            raise ConfigError("train.augmentation.params.acquisition (resampling and JPEG re-encoding) runs per "
                              "image: use train.augmentation.mode=sample")
        self.geometric = bool(self.p["crop_scale"] or self.p["degrees"] or self.p["translate"] or self.p["scale"])
        self.colour = any(self.p[k] for k in ("brightness", "contrast", "saturation", "hue"))

    def forward(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"BatchAugment expects a (B, 3, H, W) uint8 batch, got {tuple(images.shape)} "
                             f"{images.dtype}")
        if (self.p["rot90"] or self.geometric) and images.shape[-1] != images.shape[-2]:
            raise ConfigError("batched 90° turns, crops, rotations, shifts and zooms need square images, got "
                              f"{tuple(images.shape[-2:])}; use train.augmentation.mode=sample")
        g = generator
        x = _flip(images, self.p["hflip"], -1, g)
        x = _flip(x, self.p["vflip"], -2, g)
        if self.p["rot90"]:
            x = _rot90(x, g)
        if not (self.geometric or self.colour or self.p["erase_p"]):
            return x
        with torch.autocast(x.device.type, enabled=False):  # fp32 even inside a bf16/fp16 training step
            y = x.float().div_(255.0)
            if self.geometric:
                y = self._affine(y, g)
            if self.colour:
                y = self._jitter(y, g)
            if self.p["erase_p"]:
                y = self._erase(y, g)
            return y.mul_(255.0).round_().clamp_(0, 255).to(torch.uint8)

    def _affine(self, y: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
        """Random resized crop, then rotation / shift / zoom: one sampling grid per sample, black outside."""
        n, _, h, w = y.shape
        dev = y.device
        # Output → crop-image coordinates (inverse of rotate, scale, translate about the centre), normalised [-1, 1].
        angle = _uniform(-self.p["degrees"], self.p["degrees"], n, g, dev) * (math.pi / 180)
        t = self.p["translate"]
        shift = torch.stack([_uniform(-t, t, n, g, dev), _uniform(-t, t, n, g, dev)], 1) * 2
        lo, hi = self.p["scale"] or (1.0, 1.0)
        zoom = _uniform(lo, hi, n, g, dev)
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        inv = torch.stack([torch.stack([cos, sin], 1), torch.stack([-sin, cos], 1)], 1)  # R^T / s
        theta = torch.cat([inv, -(inv @ shift.unsqueeze(-1))], 2)
        grid = F.affine_grid(theta, (n, 3, h, w), align_corners=False)
        inside = (grid.abs() <= 1).all(-1)
        # Crop-image → source coordinates: the random resized crop box.
        box_scale, box_centre = self._crop_boxes(n, h, w, g, dev)
        grid = grid * box_scale[:, None, None, :] + box_centre[:, None, None, :]
        out = F.grid_sample(y, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        return out * inside[:, None]

    def _crop_boxes(self, n: int, h: int, w: int, g: torch.Generator | None,
                    dev: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample crop half-extent and centre in normalised source coordinates (the whole image when off)."""
        if not self.p["crop_scale"]:
            return torch.ones(n, 2, device=dev), torch.zeros(n, 2, device=dev)
        tries = 10  # as torchvision: up to 10 draws of area and aspect ratio, else the whole image
        area = _uniform(*self.p["crop_scale"], n * tries, g, dev).view(n, tries)
        lr = [math.log(r) for r in self.p["crop_ratio"]]
        ratio = torch.exp(_uniform(*lr, n * tries, g, dev)).view(n, tries)
        cw, ch = torch.sqrt(area * ratio), torch.sqrt(area / ratio)  # fractions of the width / height
        ok = (cw <= 1) & (ch <= 1)
        first = torch.where(ok.any(1), ok.float().argmax(1), torch.zeros(n, dtype=torch.long, device=dev))
        pick = torch.arange(n, device=dev)
        cw = torch.where(ok.any(1), cw[pick, first], torch.ones(n, device=dev))
        ch = torch.where(ok.any(1), ch[pick, first], torch.ones(n, device=dev))
        half = torch.stack([cw, ch], 1)
        centre = (torch.rand(n, 2, generator=g, device=dev) * 2 - 1) * (1 - half)
        return half, centre

    def _jitter(self, y: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
        n, dev = len(y), y.device

        def factor(key: str) -> torch.Tensor:
            v = self.p[key]
            return _uniform(max(0.0, 1 - v), 1 + v, n, g, dev).view(n, 1, 1, 1)

        gray_w = torch.tensor(_GRAY, device=dev).view(1, 3, 1, 1)
        if self.p["brightness"]:
            y = (y * factor("brightness")).clamp_(0, 1)
        if self.p["contrast"]:
            mean = (y * gray_w).sum(1, keepdim=True).mean((2, 3), keepdim=True)
            c = factor("contrast")
            y = (c * y + (1 - c) * mean).clamp_(0, 1)
        if self.p["saturation"]:
            gray = (y * gray_w).sum(1, keepdim=True)
            s = factor("saturation")
            y = (s * y + (1 - s) * gray).clamp_(0, 1)
        if self.p["hue"]:
            a = _uniform(-self.p["hue"], self.p["hue"], n, g, dev) * (2 * math.pi)
            yiq = _YIQ.to(dev)
            rot = torch.zeros(n, 3, 3, device=dev)
            rot[:, 0, 0] = 1
            rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = a.cos(), -a.sin(), a.sin(), a.cos()
            m = _YIQ_INV.to(dev) @ rot @ yiq  # RGB → YIQ, rotate the chroma plane, back to RGB
            y = torch.einsum("nij,njhw->nihw", m, y).clamp_(0, 1)
        return y

    def _erase(self, y: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
        n, _, h, w = y.shape
        dev = y.device
        chosen = torch.rand(n, generator=g, device=dev) < self.p["erase_p"]
        area = _uniform(*self.p["erase_scale"], n, g, dev) * h * w
        ratio = torch.exp(_uniform(*(math.log(r) for r in _ERASE_RATIO), n, g, dev))
        eh = torch.sqrt(area * ratio).round().clamp(1, h)
        ew = torch.sqrt(area / ratio).round().clamp(1, w)
        y0 = (torch.rand(n, generator=g, device=dev) * (h - eh + 1)).floor()
        x0 = (torch.rand(n, generator=g, device=dev) * (w - ew + 1)).floor()
        rows = torch.arange(h, device=dev).view(1, h, 1)
        cols = torch.arange(w, device=dev).view(1, 1, w)
        box = ((rows >= y0.view(n, 1, 1)) & (rows < (y0 + eh).view(n, 1, 1))
               & (cols >= x0.view(n, 1, 1)) & (cols < (x0 + ew).view(n, 1, 1)) & chosen.view(n, 1, 1))
        return y.masked_fill(box[:, None], 0.0)


def rank_generator(device: torch.device | str, rank: int) -> torch.Generator:
    """A generator for one process's batched augmentation: drawn from the global stream, offset by ``rank`` (every
    DDP rank is seeded alike, so without the offset sample i of every rank would get the same draw)."""
    return torch.Generator(device=device).manual_seed(int(torch.randint(0, 2**62, ())) + rank)


def batch_augmentation(train_cfg: TrainConfig) -> BatchAugment | None:
    """The batched augmentation of ``train_cfg`` when ``train.augmentation.mode`` is ``batch``, else None."""
    aug = train_cfg.augmentation
    if aug.mode != "batch":
        return None
    return BatchAugment(augmentation_params(aug.preset, aug.params))


def _uniform(lo: float, hi: float, n: int, g: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """``n`` draws from U(lo, hi)."""
    return torch.rand(n, generator=g, device=device) * (hi - lo) + lo


def _flip(x: torch.Tensor, p: float, dim: int, g: torch.Generator | None) -> torch.Tensor:
    if not p:
        return x
    chosen = torch.rand(len(x), generator=g, device=x.device) < p
    return torch.where(chosen.view(-1, 1, 1, 1), x.flip(dim), x)


def _rot90(x: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
    k = torch.randint(0, 4, (len(x),), generator=g, device=x.device)
    out = x.clone()
    for turns in (1, 2, 3):  # an empty selection is a no-op, so no host-device sync on .any()
        chosen = k == turns
        out[chosen] = torch.rot90(x[chosen], turns, dims=(-2, -1))
    return out


__all__ = ["BatchAugment", "batch_augmentation", "rank_generator"]
