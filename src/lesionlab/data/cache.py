"""Decode + crop + resize every image once into a uint8 ``(N, H, W, 3)`` memory-mapped array.

The cache key covers the dataset, the crop, the size and a fingerprint of every input file (path, size,
modification time), so an edited, added or removed image builds a new cache instead of serving stale pixels.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from tqdm.auto import tqdm

from lesionlab.data.canonical import canonicalise
from lesionlab.data.crops import get_crop
from lesionlab.data.images import ImageReadError, open_image
from lesionlab.errors import LesionLabError

logger = logging.getLogger(__name__)

CACHE_VERSION = 1
NPZ_SCHEME = "npz://"


class BadImagesError(LesionLabError, ValueError):
    """Some images could not be decoded; ``failures`` lists them (image_id, path, reason, detail)."""

    def __init__(self, failures: list[dict]) -> None:
        lines = "\n".join(f"  {f['path']}: {f['detail']}" for f in failures[:20])
        more = f"\n  ... and {len(failures) - 20} more" if len(failures) > 20 else ""
        super().__init__(
            f"{len(failures)} image(s) could not be read:\n{lines}{more}\n"
            "Fix or remove them, or pass --skip-bad (data.skip_bad=true) to train without them."
        )
        self.failures = failures


@dataclass(frozen=True)
class ImageArrays:
    """Cached pixels for the rows of a table (row i ↔ ``images[i]``)."""

    images: np.ndarray
    valid: np.ndarray  # False where the image failed to decode (only with skip_bad)
    failures: list[dict]
    directory: Path
    built: bool
    seconds: float


def npz_reference(npz_path: str | Path, key: str, index: int) -> str:
    """A ``path`` value pointing at one image inside an ``.npz`` array (used by DermaMNIST)."""
    return f"{NPZ_SCHEME}{Path(npz_path).resolve()}::{key}::{index}"


class _SourceReader:
    """Reads files and ``npz://`` references; keeps opened npz archives for the duration of one build."""

    def __init__(self) -> None:
        self._npz: dict[str, np.lib.npyio.NpzFile] = {}
        self._arrays: dict[tuple[str, str], np.ndarray] = {}
        self._lock = threading.Lock()  # decoding runs in a thread pool; load each npz array once

    def read(self, path: str) -> Image.Image:
        if not path.startswith(NPZ_SCHEME):
            return open_image(path)
        file, key, idx = path[len(NPZ_SCHEME):].split("::")
        with self._lock:
            if (file, key) not in self._arrays:
                if file not in self._npz:
                    self._npz[file] = np.load(file)
                self._arrays[(file, key)] = self._npz[file][key]
        arr = self._arrays[(file, key)][int(idx)]
        return Image.fromarray(arr).convert("RGB")

    def fingerprint(self, path: str) -> str:
        file = path[len(NPZ_SCHEME):].split("::")[0] if path.startswith(NPZ_SCHEME) else path
        try:
            st = os.stat(file)
        except OSError:
            return f"{path}|missing"
        return f"{path}|{st.st_size}|{st.st_mtime_ns}"


def cache_key(table: pd.DataFrame, dataset: str, crop: str, size: int, canonical: str | None = None) -> str:
    reader = _SourceReader()
    h = hashlib.sha256(f"v{CACHE_VERSION}|{dataset}|{crop}|{size}".encode()
                       + (f"|canonical={canonical}".encode() if canonical and canonical != "none" else b""))
    for image_id, path in zip(table["image_id"], table["path"], strict=True):
        h.update(f"{image_id}|{reader.fingerprint(str(path))}\n".encode())
    slug = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in dataset)[:40]
    return f"{slug}-{crop}-{size}px-{h.hexdigest()[:16]}"


def _decode(reader: _SourceReader, crop_fn, size: int, row: tuple[str, str]) -> tuple[np.ndarray | None, dict | None]:
    image_id, path = row
    try:
        img = crop_fn(reader.read(path), size)
        return np.asarray(img, dtype=np.uint8), None
    except ImageReadError as exc:
        return None, {"image_id": image_id, "path": path, "reason": exc.reason, "detail": exc.detail}
    except Exception as exc:  # e.g. a bad npz reference: report, don't crash the build
        return None, {"image_id": image_id, "path": path, "reason": "error", "detail": str(exc)}


def _canonical_then(crop_fn: Callable, canonical: str, img: Image.Image, size: int) -> Image.Image:
    return crop_fn(canonicalise(img, canonical), size)


def build_or_load(
    table: pd.DataFrame,
    *,
    dataset: str,
    crop: str,
    size: int,
    cache_dir: str | Path,
    skip_bad: bool = False,
    progress: bool = True,
    threads: int | None = None,
    canonical: str | None = None,
) -> ImageArrays:
    """Return cached arrays for ``table`` (building them on first use).

    Raises :class:`BadImagesError` naming every unreadable image unless ``skip_bad``; then they are marked
    invalid and logged, never silently dropped.
    """
    crop_fn = get_crop(crop)
    if canonical and canonical != "none":  # the model's acquisition chain first, as the predictor applies it
        crop_fn = partial(_canonical_then, crop_fn, canonical)
    key = cache_key(table, dataset, crop, size, canonical)
    directory = Path(cache_dir) / key
    start = time.perf_counter()
    built = False
    if not (directory / "meta.json").is_file():
        built = True
        _build(table, directory, crop_fn, size, progress, threads or min(4, (os.cpu_count() or 1) * 2))
    meta = json.loads((directory / "meta.json").read_text())
    images = np.load(directory / "images.npy", mmap_mode="r")
    failures = meta["failures"]
    if failures and not skip_bad:
        raise BadImagesError(failures)
    if failures:
        logger.warning("Skipping %d unreadable image(s): %s", len(failures),
                       ", ".join(f["path"] for f in failures[:5]) + (" ..." if len(failures) > 5 else ""))
    valid = np.ones(len(table), dtype=bool)
    bad_ids = {f["image_id"] for f in failures}
    valid[table["image_id"].isin(bad_ids).to_numpy()] = False
    seconds = time.perf_counter() - start
    logger.info("%s image cache %s (%d images, %.1fs)", "Built" if built else "Reused", directory, len(table), seconds)
    return ImageArrays(images, valid, failures, directory, built, seconds)


def _build(table: pd.DataFrame, directory: Path, crop_fn, size: int, progress: bool, threads: int) -> None:
    tmp = directory.with_name(directory.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    out = np.lib.format.open_memmap(tmp / "images.npy", mode="w+", dtype=np.uint8, shape=(len(table), size, size, 3))
    reader = _SourceReader()
    rows = list(zip(table["image_id"].astype(str), table["path"].astype(str), strict=True))
    failures = []
    with ThreadPoolExecutor(max_workers=threads) as pool, tqdm(
        total=len(rows), desc=f"Caching {size}px images", unit="img", disable=not progress, mininterval=1.0
    ) as bar:
        for i, (arr, failure) in enumerate(pool.map(lambda r: _decode(reader, crop_fn, size, r), rows, chunksize=64)):
            if failure is None:
                out[i] = arr
            else:
                failures.append(failure)
            bar.update(1)
    out.flush()
    del out
    meta = {"version": CACHE_VERSION, "n": len(rows), "size": size, "failures": failures,
            "image_ids": [r[0] for r in rows]}
    (tmp / "meta.json").write_text(json.dumps(meta))
    if directory.exists():  # another process finished first; keep theirs
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp.rename(directory)
