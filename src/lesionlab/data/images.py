"""Safe image decoding: every way an image file can be wrong becomes a specific :class:`ImageReadError`."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from lesionlab.errors import LesionLabError

#: Refuse images with more pixels than this (decompression bombs); ~16k x 16k.
DEFAULT_MAX_PIXELS = 268_000_000


class ImageReadError(LesionLabError, ValueError):
    """An image could not be used; ``reason`` is a short machine-readable code, ``source`` the file or name."""

    def __init__(self, source: str, reason: str, detail: str) -> None:
        super().__init__(f"{source}: {detail}")
        self.source = source
        self.reason = reason
        self.detail = detail


def _to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB without silent clipping (16-bit is rescaled, alpha is composited)."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or arr.max() > 255 else 255.0
        arr8 = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(arr8, mode="L").convert("RGB")
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode in ("RGB;16", "RGBA;16") or mode.endswith(";16"):  # pragma: no cover - rare PIL modes
        return img.convert("RGB")
    return img.convert("RGB")  # L, 1, P, CMYK, YCbCr, LAB, HSV


def open_image(
    source: str | Path | bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    name: str | None = None,
) -> Image.Image:
    """Decode a file path or bytes into an upright 8-bit RGB image.

    Raises :class:`ImageReadError` with reason ``missing``, ``empty``, ``not_an_image``, ``too_large``,
    ``truncated`` or ``corrupt``. EXIF orientation is applied, so phone photos come out upright.
    """
    label = name or (str(source) if not isinstance(source, bytes) else "<bytes>")
    if isinstance(source, bytes):
        data = source
    else:
        path = Path(source)
        if not path.is_file():
            raise ImageReadError(label, "missing", "file not found")
        data = path.read_bytes()
    if len(data) == 0:
        raise ImageReadError(label, "empty", "file is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img: Image.Image = Image.open(io.BytesIO(data))
            w, h = img.size
            if w * h > max_pixels:
                raise ImageReadError(label, "too_large", f"image is {w}x{h} = {w * h:,} pixels; the limit is "
                                     f"{max_pixels:,}")
            img.load()
    except ImageReadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageReadError(label, "too_large", f"image is too large to decode safely ({exc})") from exc
    except UnidentifiedImageError as exc:
        raise ImageReadError(label, "not_an_image", "not a recognised image format") from exc
    except OSError as exc:
        msg = str(exc)
        reason = "truncated" if "truncated" in msg.lower() or "premature" in msg.lower() else "corrupt"
        raise ImageReadError(label, reason, f"image data is {reason}: {msg}") from exc
    except (SyntaxError, ValueError) as exc:
        raise ImageReadError(label, "corrupt", f"image data is corrupt: {exc}") from exc
    try:
        img = ImageOps.exif_transpose(img) or img
    except Exception as exc:  # malformed EXIF should not make a valid image unusable
        warnings.warn(f"{label}: ignoring unreadable EXIF orientation ({exc})", stacklevel=2)
    return _to_rgb(img)
