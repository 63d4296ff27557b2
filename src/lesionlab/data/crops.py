"""Crop-and-resize policies, registered by name. Each maps an RGB image to a ``size`` x ``size`` image."""

from __future__ import annotations

from collections.abc import Callable

from PIL import Image

from lesionlab.registry import Registry

CropFn = Callable[[Image.Image, int], Image.Image]
CROPS: Registry[CropFn] = Registry("crop")

_RESAMPLE = Image.Resampling.BICUBIC


@CROPS.register("full", help="the whole frame, squashed to a square (aspect ratio not kept)")
def full_frame(img: Image.Image, size: int) -> Image.Image:
    return img.resize((size, size), _RESAMPLE, reducing_gap=3.0)


@CROPS.register("center-square", help="centre square of side min(w, h) (ISIC 2018 test protocol), resized")
def center_square(img: Image.Image, size: int) -> Image.Image:
    w, h = img.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    return img.crop((left, top, left + side, top + side)).resize((size, size), _RESAMPLE, reducing_gap=3.0)


@CROPS.register("pad", help="resize the long side to size and pad the short side with black")
def resize_with_pad(img: Image.Image, size: int) -> Image.Image:
    w, h = img.size
    scale = size / max(w, h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    canvas = Image.new("RGB", (size, size))
    canvas.paste(img.resize((nw, nh), _RESAMPLE, reducing_gap=3.0), ((size - nw) // 2, (size - nh) // 2))
    return canvas


def get_crop(name: str) -> CropFn:
    return CROPS.get(name)
