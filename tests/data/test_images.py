"""open_image on a corpus of broken and unusual files: every failure has its reason code, every mode ends RGB."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lesionlab.data.images import ImageReadError, open_image


def png_header_only(width: int, height: int) -> bytes:
    """A syntactically valid PNG whose header claims ``width`` x ``height`` but holds (almost) no pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def truncated_jpeg(dest: Path, real: Path) -> Path:
    data = real.read_bytes()
    dest.write_bytes(data[: len(data) // 2])
    return dest


def truncated_png(dest: Path, real: Path) -> Path:
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(dest)  # noise: no tiny IDAT
    data = dest.read_bytes()
    dest.write_bytes(data[: len(data) // 2])
    return dest


def text_file(dest: Path, real: Path) -> Path:
    dest.write_text("lesion_id,image_id\nHAM_0000118,ISIC_0027419\n")
    return dest


def zero_bytes(dest: Path, real: Path) -> Path:
    dest.write_bytes(b"")
    return dest


def missing(dest: Path, real: Path) -> Path:
    return dest


def huge_header(dest: Path, real: Path) -> Path:
    dest.write_bytes(png_header_only(50_000, 50_000))  # 2.5 gigapixels claimed in a ~60-byte file
    return dest


BAD_FILES: list[tuple[str, str, Callable[[Path, Path], Path], str]] = [
    ("truncated-jpeg", "cut.jpg", truncated_jpeg, "truncated"),
    ("truncated-png", "cut.png", truncated_png, "truncated"),
    ("text-named-jpg", "notes.jpg", text_file, "not_an_image"),
    ("zero-bytes", "empty.jpg", zero_bytes, "empty"),
    ("missing", "nothere.jpg", missing, "missing"),
    ("decompression-bomb-header", "bomb.png", huge_header, "too_large"),
]


@pytest.fixture
def real_jpeg(ham_images_dir: Path) -> Path:
    return ham_images_dir / "ISIC_0024306.jpg"


@pytest.mark.parametrize(("case", "filename", "make", "reason"), BAD_FILES, ids=[c[0] for c in BAD_FILES])
def test_bad_files_raise_with_reason(tmp_path: Path, real_jpeg: Path, case: str, filename: str,
                                     make: Callable[[Path, Path], Path], reason: str) -> None:
    path = make(tmp_path / filename, real_jpeg)
    with pytest.raises(ImageReadError) as info:
        open_image(path)
    assert info.value.reason == reason, info.value
    assert info.value.source == str(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(("make", "reason"), [(truncated_jpeg, "truncated"), (text_file, "not_an_image")])
def test_bad_bytes_are_named(tmp_path: Path, real_jpeg: Path, make: Callable[[Path, Path], Path],
                             reason: str) -> None:
    data = make(tmp_path / "x.jpg", real_jpeg).read_bytes()
    with pytest.raises(ImageReadError) as info:
        open_image(data, name="upload.jpg")
    assert info.value.reason == reason
    assert info.value.source == "upload.jpg"


def test_empty_bytes(tmp_path: Path) -> None:
    with pytest.raises(ImageReadError) as info:
        open_image(b"")
    assert info.value.reason == "empty"


@pytest.mark.parametrize(("size", "max_pixels", "ok"), [
    ((200, 150), 30_000, True),
    ((200, 150), 29_999, False),
    ((40, 30), 1_000, False),
    ((40, 30), 1_200, True),
])
def test_max_pixels(tmp_path: Path, size: tuple[int, int], max_pixels: int, ok: bool) -> None:
    path = tmp_path / "img.png"
    Image.new("RGB", size, (10, 20, 30)).save(path)
    if ok:
        assert open_image(path, max_pixels=max_pixels).size == size
    else:
        with pytest.raises(ImageReadError) as info:
            open_image(path, max_pixels=max_pixels)
        assert info.value.reason == "too_large"
        assert f"{size[0]}x{size[1]}" in str(info.value)


def test_size_is_checked_before_decoding(tmp_path: Path) -> None:
    """A header claiming 5000x5000 with no pixel data is refused as too large, not reported as corrupt."""
    path = tmp_path / "claims.png"
    path.write_bytes(png_header_only(5_000, 5_000))
    with pytest.raises(ImageReadError) as info:
        open_image(path, max_pixels=1_000_000)
    assert info.value.reason == "too_large"


def test_real_jpeg(real_jpeg: Path) -> None:
    img = open_image(real_jpeg)
    assert (img.mode, img.size) == ("RGB", (200, 150))
    assert np.asarray(img).std() > 5  # real content, not a blank frame


def test_sixteen_bit_grayscale_is_scaled_not_clipped(tmp_path: Path) -> None:
    values = np.array([[0, 1000, 32768, 65535]], dtype=np.uint16)
    path = tmp_path / "g16.png"
    Image.fromarray(values).save(path)
    assert Image.open(path).mode.startswith("I")  # really a 16-bit file
    arr = np.asarray(open_image(path)).astype(int)
    assert arr.shape == (1, 4, 3)
    assert (arr[..., 0] == arr[..., 1]).all() and (arr[..., 1] == arr[..., 2]).all()
    gray = arr[0, :, 0]
    assert gray[0] == 0
    assert gray[1] == pytest.approx(1000 / 65535 * 255, abs=1)  # ~4, not 255 (clipping would saturate it)
    assert gray[2] == pytest.approx(128, abs=1)
    assert gray[3] == 255


def _save_rgba(path: Path) -> None:
    arr = np.zeros((2, 2, 4), dtype=np.uint8)
    arr[0, 0] = (255, 0, 0, 255)  # opaque red
    arr[0, 1] = (0, 255, 0, 0)  # fully transparent green
    arr[1, 0] = (0, 0, 255, 255)
    arr[1, 1] = (200, 200, 200, 255)
    Image.fromarray(arr, mode="RGBA").save(path)


def _save_gray(path: Path) -> None:
    Image.new("L", (2, 2), 77).save(path)


def _save_palette(path: Path) -> None:
    img = Image.new("P", (2, 2), 1)
    img.putpalette([0, 0, 0, 10, 20, 30] + [0] * (256 * 3 - 6))
    img.save(path)


def _save_cmyk_jpeg(path: Path) -> None:
    Image.new("CMYK", (16, 8), (0, 255, 0, 0)).save(path, quality=95)  # pure magenta ink


# (file name, writer, expected source mode, expected RGB of pixel (0, 0), expected RGB of pixel (0, 1) or None)
MODES = [
    ("rgba.png", _save_rgba, "RGBA", (255, 0, 0), (0, 0, 0)),  # transparency composited on black
    ("gray.png", _save_gray, "L", (77, 77, 77), (77, 77, 77)),
    ("palette.png", _save_palette, "P", (10, 20, 30), (10, 20, 30)),
    ("cmyk.jpg", _save_cmyk_jpeg, "CMYK", (255, 0, 255), None),
]


@pytest.mark.parametrize(("filename", "write", "mode", "pixel00", "pixel01"), MODES, ids=[m[2] for m in MODES])
def test_modes_become_rgb(tmp_path: Path, filename: str, write: Callable[[Path], None], mode: str,
                          pixel00: tuple[int, int, int], pixel01: tuple[int, int, int] | None) -> None:
    path = tmp_path / filename
    write(path)
    assert Image.open(path).mode == mode
    img = open_image(path)
    assert img.mode == "RGB"
    arr = np.asarray(img).astype(int)
    tol = 8 if filename.endswith(".jpg") else 0  # JPEG is lossy
    np.testing.assert_allclose(arr[0, 0], pixel00, atol=tol)
    if pixel01 is not None:
        np.testing.assert_allclose(arr[0, 1], pixel01, atol=tol)


@pytest.mark.parametrize(("orientation", "expected_size"), [
    (1, (40, 20)),  # upright
    (3, (40, 20)),  # rotated 180°
    (6, (20, 40)),  # rotated 90° clockwise: width and height swap
    (8, (20, 40)),
])
def test_exif_orientation_is_applied(tmp_path: Path, orientation: int, expected_size: tuple[int, int]) -> None:
    arr = np.zeros((20, 40, 3), dtype=np.uint8)
    arr[:, :20] = (255, 0, 0)  # left half red, right half blue
    arr[:, 20:] = (0, 0, 255)
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = orientation
    path = tmp_path / f"o{orientation}.jpg"
    img.save(path, exif=exif, quality=95)
    out = open_image(path)
    assert out.size == expected_size
    top_left = np.asarray(out)[1, 1].astype(int)
    # 1: red stays left; 3 (180°) and 8 (90° counter-clockwise) move blue to the top-left; 6 keeps red there
    expected = (255, 0, 0) if orientation in (1, 6) else (0, 0, 255)
    np.testing.assert_allclose(top_left, expected, atol=40)
