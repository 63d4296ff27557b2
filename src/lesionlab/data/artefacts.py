"""Dermoscopy artefacts as augmentation: hair, ruler marks, the dermatoscope's dark vignette and gel bubbles.

Clinics differ in what lies on and around a lesion, and models learn those artefacts as shortcuts (Bissoto et al.,
"(De)Constructing Bias on Skin Lesion Datasets", CVPR Workshops 2019; Winkler et al., JAMA Dermatology 2019, on
surgical skin markings). Drawing them at random on any training image makes them carry no label.
:class:`DermoscopyArtefacts` draws, per call on a uint8 ``(3, H, W)`` tensor (same shape out), each artefact with its
own probability, the whole set with probability ``p`` (``train.augmentation.params.artefacts``):

1. hair: 1-6 dark, thin curved strands (quadratic Bézier curves) across the image;
2. ruler: a row of dark tick marks along one edge;
3. vignette: black corners outside a centred circle (the dermatoscope's round field of view);
4. bubbles: 1-4 gel bubbles, a bright rim around a slightly lighter disc.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageDraw

from lesionlab.data.acquisition import chance, uniform


@dataclass(frozen=True)
class ArtefactParams:
    """Probabilities of each artefact (given that the set runs) and the chance the set runs at all."""

    p: float = 0.5
    hair_p: float = 0.5
    ruler_p: float = 0.2
    vignette_p: float = 0.3
    bubbles_p: float = 0.2


def _hair(draw: ImageDraw.ImageDraw, w: int, h: int) -> None:
    for _ in range(int(torch.randint(1, 7, ()))):
        shade = int(uniform(10, 70))
        colour = (shade + 15, shade + 5, shade)  # dark brown to black
        width = max(1, round(uniform(0.004, 0.012) * max(w, h)))
        p0 = (uniform(-0.1, 1.1) * w, uniform(-0.1, 1.1) * h)
        p2 = (uniform(-0.1, 1.1) * w, uniform(-0.1, 1.1) * h)
        p1 = (uniform(0, 1) * w, uniform(0, 1) * h)
        points = [((1 - t) ** 2 * p0[0] + 2 * (1 - t) * t * p1[0] + t ** 2 * p2[0],
                   (1 - t) ** 2 * p0[1] + 2 * (1 - t) * t * p1[1] + t ** 2 * p2[1]) for t in np.linspace(0, 1, 24)]
        draw.line(points, fill=colour, width=width, joint="curve")


def _ruler(draw: ImageDraw.ImageDraw, w: int, h: int) -> None:
    colour = (int(uniform(0, 60)),) * 3
    step = max(2, round(uniform(0.03, 0.06) * w))
    edge = int(torch.randint(0, 4, ()))
    margin = round(uniform(0.02, 0.1) * min(w, h))
    length = (w if edge < 2 else h)
    for i, pos in enumerate(range(0, length, step)):
        tick = max(2, round((0.08 if i % 5 == 0 else 0.04) * min(w, h)))
        if edge == 0:
            draw.line([(pos, margin), (pos, margin + tick)], fill=colour, width=1)
        elif edge == 1:
            draw.line([(pos, h - margin - tick), (pos, h - margin)], fill=colour, width=1)
        elif edge == 2:
            draw.line([(margin, pos), (margin + tick, pos)], fill=colour, width=1)
        else:
            draw.line([(w - margin - tick, pos), (w - margin, pos)], fill=colour, width=1)


def _bubbles(draw: ImageDraw.ImageDraw, w: int, h: int) -> None:
    for _ in range(int(torch.randint(1, 5, ()))):
        r = uniform(0.04, 0.12) * min(w, h)
        cx, cy = uniform(0, 1) * w, uniform(0, 1) * h
        box = [cx - r, cy - r, cx + r, cy + r]
        draw.ellipse(box, fill=(255, 255, 255, 40), outline=(255, 255, 255, 200), width=max(1, round(r / 6)))


def _vignette(img: torch.Tensor) -> torch.Tensor:
    h, w = img.shape[-2:]
    radius = uniform(0.6, 0.95) * math.hypot(h, w) / 2  # of the half-diagonal: 0.6 cuts the sides, 0.95 only corners
    yy, xx = torch.meshgrid(torch.arange(h) - (h - 1) / 2, torch.arange(w) - (w - 1) / 2, indexing="ij")
    soft = max(1.0, 0.03 * min(h, w))
    mask = ((radius - torch.sqrt(xx ** 2 + yy ** 2)) / soft).clamp(0, 1)
    return (img.float() * mask).round().to(torch.uint8)


class DermoscopyArtefacts(torch.nn.Module):
    """Random dermoscopy artefacts per call on a uint8 ``(3, H, W)`` tensor (see the module docstring)."""

    def __init__(self, params: ArtefactParams | None = None) -> None:
        super().__init__()
        self.params = params or ArtefactParams()

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        a = self.params
        if not chance(a.p):
            return img
        drawers = [f for f, p in ((_hair, a.hair_p), (_ruler, a.ruler_p), (_bubbles, a.bubbles_p)) if chance(p)]
        if drawers:
            h, w = img.shape[-2:]
            canvas = Image.fromarray(img.permute(1, 2, 0).numpy()).convert("RGBA")
            layer = Image.new("RGBA", canvas.size, (0, 0, 0, 0))
            draw = ImageDraw.Draw(layer)
            for drawer in drawers:
                drawer(draw, w, h)
            merged = Image.alpha_composite(canvas, layer).convert("RGB")
            img = torch.from_numpy(np.array(merged)).permute(2, 0, 1).contiguous()
        if chance(a.vignette_p):
            img = _vignette(img)
        return img
