"""Bad-input corpus against a live loopback server: every case gets its documented 4xx (or, for unusual but valid
images, a correct 200), and a valid request right after each one still succeeds."""

from __future__ import annotations

import struct
import zlib

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.serving.conftest import encode

pytestmark = pytest.mark.slow


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_header_only(width: int, height: int) -> bytes:
    """A ~100-byte PNG that declares ``width`` x ``height`` 1-bit pixels (a decompression bomb's header)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\0" * 1024))
            + _chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def images(jpeg_bytes: bytes) -> dict[str, bytes]:
    import io

    rgb = Image.open(io.BytesIO(jpeg_bytes)).convert("RGB")
    png = encode(rgb)
    noise = np.random.default_rng(0).integers(0, 256, len(jpeg_bytes) - 600, dtype=np.uint8).tobytes()
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90° clockwise
    return {
        "jpeg": jpeg_bytes, "png": png,
        "truncated_jpeg": jpeg_bytes[: len(jpeg_bytes) // 2], "truncated_png": png[: len(png) // 2],
        "corrupt_jpeg": jpeg_bytes[:600] + noise, "corrupt_png": png[:60] + b"\0" * 40 + png[100:],
        "bomb_png": png_header_only(30000, 30000), "over_limit_png": png_header_only(2500, 2000),
        "png16": encode(Image.fromarray(np.asarray(rgb.convert("L"), dtype=np.uint16) * 257)),
        "palette_png": encode(rgb.convert("P", palette=Image.Palette.ADAPTIVE)),
        "rgba_png": encode(rgb.convert("RGBA")), "grey_png": encode(rgb.convert("L")),
        "cmyk_jpeg": encode(rgb.convert("CMYK"), "JPEG", quality=95),
        "exif_rotated_jpeg": encode(rgb.transpose(Image.Transpose.ROTATE_90), "JPEG", quality=95, exif=exif.tobytes()),
        "upright_jpeg": encode(rgb, "JPEG", quality=95),
    }


#: (case, image key or raw bytes, form fields, expected status, expected error code)
ERROR_CASES = [
    ("non-image bytes", b"%PDF-1.4 certainly not a picture" * 20, {}, 415, "unsupported_image"),
    ("zero-byte file", b"", {}, 400, "empty_file"),
    ("truncated JPEG", "truncated_jpeg", {}, 422, "truncated_image"),
    ("truncated PNG", "truncated_png", {}, 422, "truncated_image"),
    ("corrupt JPEG", "corrupt_jpeg", {}, 422, "corrupt_image"),
    ("corrupt PNG", "corrupt_png", {}, 422, "corrupt_image"),
    ("decompression bomb 30000x30000 PNG", "bomb_png", {}, 413, "image_too_large"),
    ("5 Mpx PNG over the 4 Mpx limit", "over_limit_png", {}, 413, "image_too_large"),
    ("age -5", "jpeg", {"age": "-5"}, 422, "invalid_metadata"),
    ("age not a number", "jpeg", {"age": "forty"}, 422, "invalid_metadata"),
    ("sex x", "jpeg", {"sex": "x"}, 422, "invalid_metadata"),
    ("unknown site", "jpeg", {"site": "elbow pit"}, 422, "invalid_metadata"),
    ("request over 2 MiB", b"\xff\xd8" + b"\0" * (3 * 2**20), {}, 413, "request_too_large"),
]
VALID_CASES = ["png16", "palette_png", "rgba_png", "grey_png", "cmyk_jpeg", "exif_rotated_jpeg", "png"]


def _post(url: str, data: bytes, fields: dict | None = None, query: str = "") -> httpx.Response:
    return httpx.post(f"{url}/v1/predict{query}", files={"image": ("upload", data, "application/octet-stream")},
                      data=fields or {}, timeout=60)


def test_bad_input_corpus(live_url: str, images: dict[str, bytes]) -> None:
    failures = []
    for name, source, fields, status, code in ERROR_CASES:
        data = images[source] if isinstance(source, str) else source
        r = _post(live_url, data, fields)
        body = r.json()
        if r.status_code != status or body.get("error", {}).get("code") != code or not body["error"]["message"]:
            failures.append(f"{name}: got {r.status_code} {body}, expected {status} {code}")
        after = _post(live_url, images["jpeg"])
        if after.status_code != 200:
            failures.append(f"after {name}: a valid request got {after.status_code} {after.text[:200]}")
    missing = httpx.post(f"{live_url}/v1/predict", data={"age": "40"}, timeout=60)
    if missing.status_code != 422 or missing.json()["error"]["code"] != "invalid_request":
        failures.append(f"missing image field: {missing.status_code} {missing.text[:200]}")
    assert not failures, "\n".join(failures)
    assert httpx.get(f"{live_url}/healthz").json()["status"] == "ok"


def test_unusual_but_valid_images_are_read_correctly(live_url: str, images: dict[str, bytes]) -> None:
    results = {}
    for name in [*VALID_CASES, "upright_jpeg"]:
        r = _post(live_url, images[name], query="?heatmap=true")
        assert r.status_code == 200, f"{name}: {r.text[:300]}"
        results[name] = r.json()
        assert r.json()["heatmap"]["image"].startswith("data:image/png")
    # EXIF orientation is applied: the model input of the rotated upload is the upright image's (up to JPEG noise),
    # not its 90° turn
    rotated, upright = (_pixels(results[k]["heatmap"]["image"]) for k in ("exif_rotated_jpeg", "upright_jpeg"))
    assert np.abs(rotated - upright).mean() < 4
    assert np.abs(np.rot90(upright) - upright).mean() > 4 * np.abs(rotated - upright).mean()
    assert results["exif_rotated_jpeg"]["label"] == results["upright_jpeg"]["label"]


def _pixels(data_url: str) -> np.ndarray:
    import base64
    import io

    raw = base64.b64decode(data_url.split(",", 1)[1])
    return np.asarray(Image.open(io.BytesIO(raw)).convert("RGB"), dtype=np.float64)
