"""Image corruptions in the spirit of MedMNIST-C / ImageNet-C, five severities each (numpy, PIL, SciPy).

Every corruption maps an ``(H, W, 3)`` uint8 image, a severity 1..5 and a random generator to a uint8 image of the
same shape. Geometric parameters (blur radii, line lengths, character sizes) scale with the image side, so a
severity means the same at 32 px and at 224 px. Registered by name in :data:`CORRUPTIONS`.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFont
from scipy import ndimage

from lesionlab.registry import Registry

Corruption = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]
CORRUPTIONS: Registry[Corruption] = Registry("corruption")
SEVERITIES = (1, 2, 3, 4, 5)


def _f(img: np.ndarray) -> np.ndarray:
    return img.astype(np.float32) / 255.0


def _u8(x: np.ndarray) -> np.ndarray:
    return (np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8)


def _level(values: tuple, severity: int):
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {SEVERITIES}, got {severity}")
    return values[severity - 1]


def _scale(img: np.ndarray) -> float:
    """Geometric parameters are given for a 64-px image."""
    return img.shape[0] / 64.0


@CORRUPTIONS.register("gaussian_noise", help="additive Gaussian noise")
def gaussian_noise(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    sigma = _level((0.04, 0.07, 0.10, 0.14, 0.19), severity)
    return _u8(_f(img) + rng.normal(0, sigma, img.shape))


@CORRUPTIONS.register("shot_noise", help="Poisson (photon) noise")
def shot_noise(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    lam = _level((60, 30, 15, 8, 4), severity)
    return _u8(rng.poisson(_f(img) * lam) / lam)


@CORRUPTIONS.register("impulse_noise", help="salt-and-pepper noise")
def impulse_noise(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    amount = _level((0.01, 0.03, 0.05, 0.08, 0.12), severity)
    out = img.copy()
    hit = rng.random(img.shape) < amount
    out[hit] = np.where(rng.random(int(hit.sum())) < 0.5, 0, 255)
    return out


@CORRUPTIONS.register("speckle_noise", help="multiplicative Gaussian noise")
def speckle_noise(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    sigma = _level((0.08, 0.13, 0.2, 0.3, 0.4), severity)
    x = _f(img)
    return _u8(x + x * rng.normal(0, sigma, img.shape))


def _convolve(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    kernel = kernel / kernel.sum()
    return _u8(np.stack([ndimage.convolve(_f(img)[..., c], kernel, mode="reflect") for c in range(3)], axis=-1))


@CORRUPTIONS.register("defocus_blur", help="disk (out-of-focus) blur")
def defocus_blur(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    radius = _level((0.6, 1.0, 1.5, 2.0, 2.8), severity) * _scale(img)
    r = int(np.ceil(radius)) + 2
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    # a disk with a soft (Gaussian, sigma 0.5 px) rim, like ImageNet-C's anti-aliased disk: sub-pixel radii still blur
    outside = np.clip(np.hypot(xx, yy) - radius, 0, None)
    return _convolve(img, np.exp(-(outside ** 2) / (2 * 0.5 ** 2)).astype(np.float32))


@CORRUPTIONS.register("motion_blur", help="linear motion blur at a random angle")
def motion_blur(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    length = max(2, round(_level((2, 3, 5, 7, 9), severity) * _scale(img)))
    kernel = np.zeros((2 * length + 1, 2 * length + 1), np.float32)
    kernel[length, length // 2: length + length // 2 + 1] = 1.0
    kernel = ndimage.rotate(kernel, float(rng.uniform(0, 180)), reshape=False, order=1)
    return _convolve(img, np.clip(kernel, 0, None) + 1e-8)


@CORRUPTIONS.register("zoom_blur", help="average of progressively zoomed copies")
def zoom_blur(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    top = _level((1.06, 1.11, 1.16, 1.21, 1.28), severity)
    h, w = img.shape[:2]
    acc = _f(img).copy()
    zooms = np.arange(1.02, top + 1e-9, 0.02)
    for z in zooms:
        side_h, side_w = round(h / z), round(w / z)
        top_y, left = (h - side_h) // 2, (w - side_w) // 2
        crop = Image.fromarray(img[top_y:top_y + side_h, left:left + side_w]).resize((w, h), Image.Resampling.BILINEAR)
        acc += _f(np.asarray(crop))
    return _u8(acc / (len(zooms) + 1))


def _enhance(kind: type, factors: tuple) -> Corruption:
    def corrupt(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
        return np.asarray(kind(Image.fromarray(img)).enhance(_level(factors, severity)), dtype=np.uint8)

    return corrupt


CORRUPTIONS.add("brightness_up", _enhance(ImageEnhance.Brightness, (1.15, 1.3, 1.5, 1.7, 2.0)),
                help="brighter (PIL brightness factor 1.15..2)")
CORRUPTIONS.add("brightness_down", _enhance(ImageEnhance.Brightness, (0.85, 0.7, 0.55, 0.4, 0.28)),
                help="darker (PIL brightness factor 0.85..0.28)")
CORRUPTIONS.add("contrast_up", _enhance(ImageEnhance.Contrast, (1.3, 1.6, 2.0, 2.5, 3.2)),
                help="more contrast (PIL contrast factor 1.3..3.2)")
CORRUPTIONS.add("contrast_down", _enhance(ImageEnhance.Contrast, (0.75, 0.55, 0.4, 0.28, 0.18)),
                help="less contrast (PIL contrast factor 0.75..0.18)")


@CORRUPTIONS.register("jpeg", help="JPEG compression artifacts")
def jpeg(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=_level((40, 25, 15, 10, 6), severity))
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"), dtype=np.uint8)


@CORRUPTIONS.register("pixelate", help="down-sampled then enlarged with nearest neighbours")
def pixelate(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    factor = _level((0.75, 0.6, 0.5, 0.4, 0.3), severity)
    h, w = img.shape[:2]
    small = Image.fromarray(img).resize((max(1, int(w * factor)), max(1, int(h * factor))), Image.Resampling.BOX)
    return np.asarray(small.resize((w, h), Image.Resampling.NEAREST), dtype=np.uint8)


@CORRUPTIONS.register("black_corners", help="dermatoscope vignette: black outside a centred circle")
def black_corners(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    h, w = img.shape[:2]
    fraction = _level((0.95, 0.88, 0.81, 0.75, 0.69), severity)  # of the half-diagonal; 0.71 touches the edges
    yy, xx = np.mgrid[0:h, 0:w]
    dist = np.hypot(yy - (h - 1) / 2, xx - (w - 1) / 2)
    out = img.copy()
    out[dist > fraction * np.hypot(h, w) / 2] = 0
    return out


@CORRUPTIONS.register("ink_characters", help="surgical-marker characters drawn on the skin")
def ink_characters(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    count = _level((1, 2, 3, 5, 7), severity)
    h, w = img.shape[:2]
    canvas = Image.fromarray(img)
    draw = ImageDraw.Draw(canvas)
    size = max(6, round(0.22 * h))
    try:
        font = ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: a fixed-size bitmap font
        font = ImageFont.load_default()
    for _ in range(count):
        char = "ABCDEFGHKLMNPRSTUVXYZ0123456789"[int(rng.integers(0, 31))]
        xy = (float(rng.uniform(0, w - 0.6 * size)), float(rng.uniform(0, h - size)))
        colour = tuple(int(v) for v in rng.integers((40, 20, 80), (90, 60, 150)))  # violet skin-marker ink
        draw.text(xy, char, fill=colour, font=font, stroke_width=max(0, size // 12), stroke_fill=colour)
    return np.asarray(canvas, dtype=np.uint8)


def corrupt_batch(images: np.ndarray, name: str, severity: int, seed: int = 0) -> np.ndarray:
    """Apply one corruption at one severity to every image of ``(N, H, W, 3)`` uint8 (reproducible per seed)."""
    fn = CORRUPTIONS.get(name)
    rng = np.random.default_rng([seed, severity, *name.encode()])
    return np.stack([fn(np.asarray(im), severity, rng) for im in images]) if len(images) else images.copy()
