"""Near-duplicate images by 64-bit DCT perceptual hashes: hashing (memoised per file), close pairs and groups.

Used where lesion ids are missing or untrusted: the ISIC Archive loader groups an image with its near-duplicates so
they land in one split, and drops images that near-duplicate another dataset (HAM10000, or the external test set
PH2); the leakage audit finds near-duplicates across the splits of a run.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import imagehash
import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from lesionlab.data.images import ImageReadError, open_image

logger = logging.getLogger(__name__)

#: Default Hamming distance (of 64 bits) at or under which two images count as near-duplicates.
MAX_DISTANCE = 4


def _phash_bits(image: Image.Image) -> np.ndarray:
    return imagehash.phash(image, hash_size=8).hash.ravel()


def _pack(bits: np.ndarray) -> np.ndarray:
    return np.packbits(bits.reshape(-1, 64), axis=1).view(">u8").ravel().astype(np.uint64)


def perceptual_hashes(images: np.ndarray, hash_size: int = 8) -> np.ndarray:
    """64-bit (``hash_size`` 8) DCT perceptual hashes of ``(N, H, W, 3)`` uint8 images, packed as uint64."""
    if hash_size != 8:
        raise ValueError("only 64-bit hashes (hash_size=8) are supported")
    if not len(images):
        return np.zeros(0, np.uint64)
    return _pack(np.stack([_phash_bits(Image.fromarray(np.asarray(im))) for im in images]))


def _centre_square(image: Image.Image) -> Image.Image:
    w, h = image.size
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    return image.crop((left, top, left + s, top + s))


def file_hashes(paths: Sequence[str | Path], cache_dir: Path | None = None, *, progress: bool = False,
                what: str = "images") -> np.ndarray:
    """``(N, 2)`` uint64 hashes per file: the whole frame (squashed to a square) and its centre square.

    Two geometries, because square copies of 4:3 originals were made either way. The result is memoised under
    ``cache_dir/near-duplicates`` by the files' paths, sizes and modification times. An unreadable file hashes to
    all ones in both columns (it matches nothing real) and is logged.
    """
    key = hashlib.sha256(b"phash-v1")
    for p in paths:
        st = os.stat(p)
        key.update(f"{p}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    memo = cache_dir / "near-duplicates" / f"{key.hexdigest()[:24]}.npy" if cache_dir is not None else None
    if memo is not None and memo.is_file():
        return np.load(memo, allow_pickle=False)
    out = np.full((len(paths), 2), np.iinfo(np.uint64).max, dtype=np.uint64)
    for i, p in enumerate(tqdm(paths, desc=f"Hashing {what}", unit="img", disable=not progress, leave=False)):
        try:
            image = open_image(p)
        except ImageReadError as exc:
            logger.warning("near-duplicate check: cannot read %s (%s)", p, exc)
            continue
        out[i, 0] = _pack(_phash_bits(image))[0]
        out[i, 1] = _pack(_phash_bits(_centre_square(image)))[0]
    if memo is not None:
        memo.parent.mkdir(parents=True, exist_ok=True)
        tmp = memo.with_suffix(f".tmp-{os.getpid()}.npy")
        np.save(tmp, out)
        tmp.replace(memo)
    return out


def _popcount(x: np.ndarray) -> np.ndarray:
    """Set bits per uint64 (``np.bitwise_count`` on NumPy >= 2)."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x)
    return np.unpackbits(np.ascontiguousarray(x).view(np.uint8).reshape(*x.shape, 8), axis=-1).sum(axis=-1)


def close_pairs(a: np.ndarray, b: np.ndarray, max_distance: int, chunk: int = 512) -> np.ndarray:
    """``(i, j, distance)`` rows for hash pairs ``a[i]``, ``b[j]`` within ``max_distance`` bits."""
    out = []
    for start in range(0, len(a), chunk):
        d = _popcount(a[start:start + chunk, None] ^ b[None, :])
        i, j = np.nonzero(d <= max_distance)
        out.append(np.stack([i + start, j, d[i, j]], axis=1))
    return np.concatenate(out) if out else np.zeros((0, 3), np.int64)


def close_pairs_any(a: np.ndarray, b: np.ndarray, max_distance: int = MAX_DISTANCE) -> np.ndarray:
    """Like :func:`close_pairs` for ``(N, K)`` hash sets: a pair is close when any geometry of ``a`` is close to any
    of ``b``; ``(i, j)`` rows, unique."""
    found = [close_pairs(a[:, u], b[:, v], max_distance)[:, :2] for u in range(a.shape[1]) for v in range(b.shape[1])]
    pairs = np.concatenate(found) if found else np.zeros((0, 2), np.int64)
    return np.unique(pairs, axis=0) if len(pairs) else pairs.reshape(0, 2)


def duplicate_groups(hashes: np.ndarray, max_distance: int = MAX_DISTANCE) -> np.ndarray:
    """Group index per image: images linked by a chain of near-duplicate pairs share one (union-find)."""
    parent = np.arange(len(hashes))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in close_pairs_any(hashes, hashes, max_distance):
        if i != j:
            ri, rj = root(int(i)), root(int(j))
            if ri != rj:
                parent[max(ri, rj)] = min(ri, rj)
    return np.array([root(i) for i in range(len(hashes))])
