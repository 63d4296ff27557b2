"""Crop-and-resize policies: every one returns size x size RGB; centre-square and pad keep what they promise."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from lesionlab.data.crops import CROPS, get_crop
from lesionlab.registry import UnknownNameError


def striped(width: int = 200, height: int = 150) -> Image.Image:
    """White centre square, red bands left and right of it (the parts a centre-square crop must drop)."""
    side = min(width, height)
    arr = np.zeros((height, width, 3), dtype=np.uint8)
    arr[:] = (255, 0, 0)
    left, top = (width - side) // 2, (height - side) // 2
    arr[top:top + side, left:left + side] = (255, 255, 255)
    return Image.fromarray(arr)


@pytest.mark.parametrize("crop", sorted(CROPS))
@pytest.mark.parametrize(("width", "height", "size"), [(200, 150, 32), (150, 200, 16), (64, 64, 64), (600, 450, 8),
                                                       (3, 200, 12)])
def test_output_is_size_square_rgb(crop: str, width: int, height: int, size: int) -> None:
    out = get_crop(crop)(Image.new("RGB", (width, height), (9, 9, 9)), size)
    assert out.size == (size, size)
    assert out.mode == "RGB"


def test_center_square_at_native_size_is_the_centre_150(ham_images_dir) -> None:
    img = Image.open(ham_images_dir / "ISIC_0024306.jpg").convert("RGB")
    assert img.size == (200, 150)
    out = np.asarray(get_crop("center-square")(img, 150))
    np.testing.assert_array_equal(out, np.asarray(img)[:, 25:175])


@pytest.mark.parametrize("size", [16, 64, 224])
def test_center_square_equals_centre_crop_resized(ham_images_dir, size: int) -> None:
    img = Image.open(ham_images_dir / "ISIC_0024310.jpg").convert("RGB")
    centre = Image.fromarray(np.ascontiguousarray(np.asarray(img)[:, 25:175]))
    expected = np.asarray(centre.resize((size, size), Image.Resampling.BICUBIC)).astype(int)
    out = np.asarray(get_crop("center-square")(img, size)).astype(int)
    assert np.abs(out - expected).max() <= 2  # same pixels up to resampling rounding


@pytest.mark.parametrize(("width", "height"), [(200, 150), (150, 200)])
def test_center_square_drops_the_sides(width: int, height: int) -> None:
    out = np.asarray(get_crop("center-square")(striped(width, height), 32))
    assert (out == 255).all()  # no red from the discarded bands


def test_full_keeps_the_sides() -> None:
    out = np.asarray(get_crop("full")(striped(), 32)).astype(int)
    assert (out[:, 0] == (255, 0, 0)).all() and (out[:, -1] == (255, 0, 0)).all()
    assert (out[:, 16] == 255).all()


# (width, height, size, rows or columns that must be black bars, the content box (left, top, right, bottom))
PAD_CASES = [
    (200, 150, 32, (32, 24), (0, 4, 32, 28)),  # landscape 4:3 -> 32x24 content, 4-px bars top and bottom
    (150, 200, 32, (24, 32), (4, 0, 28, 32)),  # portrait -> bars left and right
    (100, 100, 20, (20, 20), (0, 0, 20, 20)),  # square -> no bars
    (300, 100, 30, (30, 10), (0, 10, 30, 20)),  # 3:1 -> 30x10 content
]


@pytest.mark.parametrize(("width", "height", "size", "content", "box"), PAD_CASES)
def test_pad_keeps_aspect_ratio(width: int, height: int, size: int, content: tuple[int, int],
                                box: tuple[int, int, int, int]) -> None:
    out = np.asarray(get_crop("pad")(Image.new("RGB", (width, height), (255, 255, 255)), size))
    left, top, right, bottom = box
    assert (right - left, bottom - top) == content
    assert (right - left) / (bottom - top) == pytest.approx(width / height, rel=0.05)
    assert (out[top:bottom, left:right] == 255).all()
    mask = np.ones((size, size), dtype=bool)
    mask[top:bottom, left:right] = False
    assert (out[mask] == 0).all()  # the rest is black padding


def test_unknown_crop_suggests() -> None:
    with pytest.raises(UnknownNameError, match=r"Did you mean 'center-square'.*full, pad"):
        get_crop("centre-square")
