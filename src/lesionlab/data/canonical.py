"""Canonical acquisition: bring any input image into the form of the training files before crop and resize.

HAM10000's files are the 600x450 originals reduced to 200x150 and saved as JPEG at quality about 75 (read off their
quantisation tables); a model trained on them learns that chain. ``ham-200x150`` puts an image of any resolution
through the same chain — shrink so the short side is 150 px (antialiased), one JPEG round trip at quality 75 — so a
full-resolution original and its 200x150 copy reach the model nearly alike; smaller images pass unchanged.
``none`` leaves images as they are. Training caches and the predictor apply the model's stored choice
(``data.canonical`` → ``Preprocessing.canonical``); a built-in ensemble's manifest may set it too.
"""

from __future__ import annotations

import io
from collections.abc import Callable

from PIL import Image

from lesionlab.registry import Registry

Canonicaliser = Callable[[Image.Image], Image.Image]


def shrink_and_reencode(short_side: int, quality: int) -> Canonicaliser:
    """An image larger than the training files: shrink it so its short side is ``short_side`` (Lanczos), then one
    JPEG round trip. Images at or below that size pass unchanged (a second encoding would only add artifacts)."""

    def apply(image: Image.Image) -> Image.Image:
        w, h = image.size
        scale = short_side / min(w, h)
        if scale >= 1:  # already at or below the training files' resolution: nothing to undo
            return image
        image = image.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, format="JPEG", quality=quality)
        buffer.seek(0)
        with Image.open(buffer) as decoded:
            return decoded.convert("RGB")

    return apply


CANONICAL: Registry[Canonicaliser | None] = Registry("canonical acquisition")
CANONICAL.add("none", None, help="use images as they are")
CANONICAL.add("ham-200x150", shrink_and_reencode(150, 75),
              help="as HAM10000's files: a larger image is shrunk to a 150 px short side (Lanczos) and re-encoded as "
              "JPEG at quality 75")


def canonicalise(image: Image.Image, name: str | None) -> Image.Image:
    """``image`` through the canonical chain ``name`` (None or ``none``: unchanged)."""
    fn = CANONICAL.get(name) if name else None
    return fn(image) if fn is not None else image
