"""Frozen-backbone feature cache: pooled embeddings computed once, memory-mapped, reused by head training,
linear probes and feature-space SMOTE.

Features are computed without augmentation (the cached, cropped, resized image, normalised with the model's
mean/std) in eval mode. The cache key covers the image cache key (dataset, crop, size and a fingerprint of every
image file — see :mod:`lesionlab.data.cache`), the rows used, the backbone's architecture, a hash of its weights
and the normalisation, so any change builds a new cache instead of serving stale features.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from lesionlab.config import ConfigError, ModelConfig
from lesionlab.data.prepare import PreparedData
from lesionlab.data.transforms import to_model_input
from lesionlab.models.classifier import feature_dim

logger = logging.getLogger(__name__)

FEATURE_CACHE_VERSION = 1


@dataclass(frozen=True)
class FeatureArrays:
    """Cached features: ``features[i]`` belongs to image row ``rows[i]`` of the image cache."""

    features: np.ndarray  # (N, F) float32, memory-mapped
    rows: np.ndarray
    directory: Path
    built: bool
    seconds: float


def weights_fingerprint(module: nn.Module) -> str:
    """A hash of every parameter and buffer (names, shapes, values): changes whenever the weights change."""
    h = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{tuple(t.shape)}|{t.dtype}\n".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def feature_cache_key(*, image_key: str, rows: np.ndarray, backbone: nn.Module, mean: tuple[float, ...],
                      std: tuple[float, ...]) -> str:
    """Directory name for the features of ``rows`` of one image cache through one backbone with its weights."""
    arch = type(backbone).__name__
    name = (getattr(backbone, "pretrained_cfg", None) or {}).get("architecture", arch)
    pool = getattr(getattr(backbone, "global_pool", None), "pool_type", "avg")
    h = hashlib.sha256(f"v{FEATURE_CACHE_VERSION}|{image_key}|{name}|{arch}|{pool}|{mean}|{std}|".encode())
    h.update(np.ascontiguousarray(rows, dtype=np.int64).tobytes())
    h.update(weights_fingerprint(backbone).encode())
    slug = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in str(name))[:40]
    return f"{image_key[:60]}-{slug}-{h.hexdigest()[:16]}"


@torch.inference_mode()
def _compute(backbone: nn.Module, images: np.ndarray, rows: np.ndarray, out: np.ndarray, mean: tuple[float, ...],
             std: tuple[float, ...], batch_size: int, device: str | torch.device, progress: bool) -> None:
    was_training = backbone.training
    backbone.eval().to(device)
    try:
        for start in tqdm(range(0, len(rows), batch_size), desc="Caching features", unit="batch",
                          disable=not progress):
            idx = rows[start:start + batch_size]
            batch = torch.from_numpy(np.ascontiguousarray(images[idx])).permute(0, 3, 1, 2).to(device)
            out[start:start + len(idx)] = backbone(to_model_input(batch, mean, std)).float().cpu().numpy()
    finally:
        backbone.train(was_training)


def build_or_load_features(backbone: nn.Module, images: np.ndarray, rows: np.ndarray, *, image_key: str,
                           mean: tuple[float, ...], std: tuple[float, ...], cache_dir: str | Path,
                           batch_size: int = 256, device: str | torch.device = "cpu",
                           progress: bool = True) -> FeatureArrays:
    """Pooled ``backbone`` features of ``images[rows]`` (uint8 ``(N, H, W, 3)``), built once and memory-mapped.

    ``image_key`` identifies the pixels (the image cache's directory name). Builds go to a temporary folder that
    is renamed when complete, so an interrupted build is never served.
    """
    rows = np.asarray(rows, dtype=np.int64)
    key = feature_cache_key(image_key=image_key, rows=rows, backbone=backbone, mean=tuple(mean), std=tuple(std))
    directory = Path(cache_dir) / key
    start = time.perf_counter()
    built = not (directory / "meta.json").is_file()
    if built:
        dim = feature_dim(backbone)
        tmp = directory.with_name(directory.name + f".tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        out = np.lib.format.open_memmap(tmp / "features.npy", mode="w+", dtype=np.float32, shape=(len(rows), dim))
        _compute(backbone, images, rows, out, tuple(mean), tuple(std), batch_size, device, progress)
        out.flush()
        del out
        meta = {"version": FEATURE_CACHE_VERSION, "n": len(rows), "dim": dim, "image_key": image_key,
                "weights": weights_fingerprint(backbone), "mean": list(mean), "std": list(std),
                "seconds": time.perf_counter() - start}
        (tmp / "meta.json").write_text(json.dumps(meta))
        if directory.exists():  # another process finished first; keep theirs
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.rename(directory)
    features = np.load(directory / "features.npy", mmap_mode="r")
    if features.shape[0] != len(rows):
        raise RuntimeError(f"feature cache {directory} holds {features.shape[0]} rows, expected {len(rows)}")
    seconds = time.perf_counter() - start
    logger.info("%s feature cache %s (%d x %d, %.1fs)", "Built" if built else "Reused", directory, *features.shape,
                seconds)
    return FeatureArrays(features, rows, directory, built, seconds)


def check_cacheable(cfg: ModelConfig) -> None:
    """Feature caching needs a frozen backbone whose output no trainable block changes."""
    if cfg.attention != "none":
        raise ConfigError("model.feature_cache caches pooled backbone features, but the attention block trains on "
                          "spatial ones: set model.attention=none or model.feature_cache=false")


def extract_features(data: PreparedData, model_cfg: ModelConfig, *, cache_dir: str | Path | None = None,
                     backbone: nn.Module | None = None, mean: tuple[float, ...] | None = None,
                     std: tuple[float, ...] | None = None, batch_size: int = 256,
                     progress: bool = True) -> FeatureArrays:
    """Frozen-backbone features for every row of ``data.table`` (``features[i]`` ↔ table row ``i``).

    The entry point for linear probes and feature-space SMOTE: give a :class:`ModelConfig` (its backbone is built,
    with its pretrained weights) or an already built ``backbone`` with its ``mean``/``std``. Cached under
    ``cache_dir`` (default: ``features/`` beside the image cache of ``data``).
    """
    check_cacheable(model_cfg)
    if backbone is None:
        from lesionlab.models.backbones import create_backbone

        backbone = create_backbone(model_cfg.backbone, pretrained=model_cfg.pretrained, weights=model_cfg.weights,
                                   global_pool=model_cfg.global_pool)
    if mean is None or std is None:
        cfg = getattr(backbone, "pretrained_cfg", None) or {}
        mean = tuple(cfg.get("mean", (0.485, 0.456, 0.406)))
        std = tuple(cfg.get("std", (0.229, 0.224, 0.225)))
    root = Path(cache_dir) if cache_dir is not None else data.arrays.directory.parent / "features"
    return build_or_load_features(backbone, data.images, data.rows, image_key=data.arrays.directory.name, mean=mean,
                                  std=std, cache_dir=root, batch_size=batch_size, progress=progress)
