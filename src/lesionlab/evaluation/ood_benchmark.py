"""The offline OOD benchmark set: what a lesion classifier must refuse, built without any download.

Groups (``far``: clearly not a dermatoscopic image; ``near``: a lesion photo damaged beyond judging):

- ``natural`` (far): photographs shipped with scikit-image (``skimage.data``), whole and as random crops;
- ``graphics`` (far): skimage's drawings, logos, phantoms and scanned text;
- ``noise``, ``blank``, ``gradient``, ``checkerboard``, ``text`` (far): synthetic images;
- ``corrupted`` (near): test lesions under the robustness suite's corruptions at severity 5.

Every image is an RGB PIL image at its own size; the caller applies the model's crop and size (and the quality
gate, which catches the blank images before any model would see them).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from lesionlab.evaluation.corruptions import corrupt_batch

logger = logging.getLogger(__name__)

NATURAL = ("astronaut", "camera", "chelsea", "coffee", "coins", "rocket", "moon", "clock", "brick", "grass", "gravel",
           "hubble_deep_field", "retina", "immunohistochemistry")
GRAPHICS = ("colorwheel", "logo", "horse", "page", "text", "shepp_logan_phantom")
NEAR_CORRUPTIONS = ("gaussian_noise", "impulse_noise", "defocus_blur", "motion_blur", "pixelate", "jpeg",
                    "black_corners", "ink_characters")
WORDS = ("lesion", "melanoma", "invoice", "Total 42.00", "HELLO", "quarterly report", "lorem ipsum dolor", "2026")
FAR_GROUPS = ("natural", "graphics", "noise", "blank", "gradient", "checkerboard", "text")


def _rgb(a: np.ndarray) -> Image.Image:
    a = np.asarray(a)
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    elif a.dtype != np.uint8:
        a = (np.clip((a - a.min()) / max(float(np.ptp(a)), 1e-12), 0, 1) * 255).astype(np.uint8)
    img = Image.fromarray(a)
    return img.convert("RGB")


def _skimage(names: tuple[str, ...], crops: int, rng: np.random.Generator) -> list[Image.Image]:
    try:
        from skimage import data
    except ImportError:  # pragma: no cover - scikit-image is a test extra
        logger.warning("scikit-image is not installed: the natural-image OOD groups are empty")
        return []
    out = []
    for name in names:
        try:
            img = _rgb(getattr(data, name)())
        except Exception as exc:  # some images need an optional download (pooch); skip those
            logger.info("skimage.data.%s unavailable (%s)", name, exc)
            continue
        out.append(img)
        w, h = img.size
        for _ in range(crops):
            side = int(min(w, h) * rng.uniform(0.35, 0.8))
            x, y = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
            out.append(img.crop((x, y, x + side, y + side)))
    return out


def _noise(n: int, rng: np.random.Generator, size: int) -> list[Image.Image]:
    out = []
    for i in range(n):
        if i % 3 == 0:
            a = rng.integers(0, 256, (size, size, 3))
        elif i % 3 == 1:
            a = rng.normal(rng.uniform(60, 200), rng.uniform(20, 60), (size, size, 3))
        else:  # blocky low-frequency noise
            a = np.kron(rng.integers(0, 256, (size // 16, size // 16, 3)), np.ones((16, 16, 1)))
        out.append(Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)))
    return out


def _blank(n: int, rng: np.random.Generator, size: int) -> list[Image.Image]:
    return [Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(0, 256, 3))) for _ in range(n)]


def _gradient(n: int, rng: np.random.Generator, size: int) -> list[Image.Image]:
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
    out = []
    for _ in range(n):
        angle = rng.uniform(0, 2 * np.pi)
        t = (np.cos(angle) * xx + np.sin(angle) * yy)
        t = (t - t.min()) / np.ptp(t)
        a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        out.append(Image.fromarray((a + (b - a) * t[..., None]).astype(np.uint8)))
    return out


def _checkerboard(n: int, rng: np.random.Generator, size: int) -> list[Image.Image]:
    yy, xx = np.mgrid[0:size, 0:size]
    out = []
    for _ in range(n):
        cell = int(rng.integers(4, size // 3))
        mask = ((yy // cell + xx // cell) % 2).astype(bool)
        a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        out.append(Image.fromarray(np.where(mask[..., None], a, b).astype(np.uint8)))
    return out


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: one bitmap size
        return ImageFont.load_default()


def _text(n: int, rng: np.random.Generator, size: int) -> list[Image.Image]:
    out = []
    for i in range(n):
        bg = tuple(int(v) for v in rng.integers(180, 256, 3))
        img = Image.new("RGB", (size, size), bg)
        draw = ImageDraw.Draw(img)
        for line in range(int(rng.integers(3, 8))):
            word = WORDS[(i + line) % len(WORDS)]
            draw.text((int(rng.integers(0, size // 4)), int(line * size / 8 + rng.integers(0, 8))), word,
                      fill=tuple(int(v) for v in rng.integers(0, 90, 3)), font=_font(int(rng.integers(14, 32))))
        out.append(img)
    return out


SYNTHETIC: dict[str, Callable[[int, np.random.Generator, int], list[Image.Image]]] = {
    "noise": _noise, "blank": _blank, "gradient": _gradient, "checkerboard": _checkerboard, "text": _text}


def far_ood_set(per_group: int = 24, crops: int = 4, size: int = 256, seed: int = 0) -> dict[str, list[Image.Image]]:
    """The far-OOD groups: skimage photos and graphics (with ``crops`` random crops each) and synthetic images."""
    rng = np.random.default_rng(seed)
    groups = {"natural": _skimage(NATURAL, crops, rng), "graphics": _skimage(GRAPHICS, 1, rng)}
    groups.update({name: make(per_group, rng, size) for name, make in SYNTHETIC.items()})
    return groups


def near_ood_set(images: np.ndarray, corruptions: tuple[str, ...] = NEAR_CORRUPTIONS, severity: int = 5,
                 per_corruption: int = 40, seed: int = 0) -> np.ndarray:
    """Heavy corruptions of lesion images ``(N, H, W, 3)`` uint8 (already at the model's size)."""
    rng = np.random.default_rng(seed)
    parts = []
    for name in corruptions:
        pick = rng.choice(len(images), min(per_corruption, len(images)), replace=False)
        parts.append(corrupt_batch(images[np.sort(pick)], name, severity, seed=seed))
    return np.concatenate(parts) if parts else images[:0]
