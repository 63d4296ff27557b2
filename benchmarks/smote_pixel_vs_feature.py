"""SMOTE in pixel space vs feature space on the full (lesion-disjoint) HAM10000 training split: time and peak memory.

Pixel space (the ISIC 2019 thesis): every cached training image, flattened to ``size*size*3`` float32 values.
Feature space: the same images' pooled embeddings from a frozen backbone (EfficientNet-Lite0 with the offline
ImageNet weights by default; 1,280 values each), computed once through the model zoo's feature cache. Both arms
grow every class to the largest with imbalanced-learn's SMOTE (k = 5) via LesionLab's own resampling functions; the
"thesis" rows first under-sample each class to 250 as the thesis did. Peak memory is tracemalloc's peak of the
allocations made during the SMOTE call (input conversion included); embedding time is reported separately.

    .venv/bin/python benchmarks/smote_pixel_vs_feature.py --data-root ../shared/data --size 64
"""

from __future__ import annotations

import argparse
import time
import tracemalloc
from collections.abc import Callable

import numpy as np

from lesionlab.config import DataConfig, ModelConfig
from lesionlab.data.prepare import prepare_data
from lesionlab.models.classifier import create_model, default_normalisation
from lesionlab.models.features import extract_features
from lesionlab.training.resampling import pixel_smote, smote, undersample


def measure(fn: Callable[[], tuple[np.ndarray, np.ndarray]]) -> tuple[float, float, int]:
    """(seconds, peak MiB of new allocations, synthetic samples) of one call."""
    tracemalloc.start()
    t0 = time.perf_counter()
    synth, _ = fn()
    seconds = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return seconds, peak / 2**20, len(synth)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", default=None)
    p.add_argument("--cache-dir", default=None, help="image cache (default: $LESIONLAB_CACHE or the user cache)")
    p.add_argument("--size", type=int, default=64, help="image size in px (default 64, the default config's)")
    p.add_argument("--backbone", default="efficientnet-lite0")
    p.add_argument("--pretrained", default="imagenet", help="imagenet (offline package weights) or false")
    p.add_argument("--k", type=int, default=5)
    p.add_argument("--cap", type=int, default=250, help="per-class cap of the 'thesis' rows (default 250)")
    args = p.parse_args()

    data = prepare_data(DataConfig(root=args.data_root, image_size=args.size, cache_dir=args.cache_dir))
    train = data.indices("train")
    y = data.targets()[train]
    print(f"training split: {len(train)} images, per class {np.bincount(y).tolist()}, {args.size}px")

    pretrained: str | bool = False if args.pretrained.lower() == "false" else args.pretrained
    model_cfg = ModelConfig(backbone=args.backbone, pretrained=pretrained)
    model = create_model(model_cfg, len(data.dataset.class_names))
    mean, std = default_normalisation(model)
    t0 = time.perf_counter()
    feats = extract_features(data, model_cfg, backbone=model.backbone, mean=mean, std=std, progress=False)
    embed_s = time.perf_counter() - t0
    x_feat = np.asarray(feats.features[train], dtype=np.float32)
    print(f"embeddings: {x_feat.shape[1]} values/image from frozen {args.backbone} ({args.pretrained}); "
          f"{'computed' if feats.built else 'reused from the feature cache'} in {embed_s:.1f}s")

    kept, ky = undersample(train, y, args.cap, seed=0)
    kept_feat = np.asarray(feats.features[kept], dtype=np.float32)
    cases = [
        ("pixel", "full split", lambda: pixel_smote(data.images, data.rows[train], y, args.k, 0),
         args.size * args.size * 3),
        ("feature", "full split", lambda: smote(x_feat, y, args.k, 0), x_feat.shape[1]),
        ("pixel", f"cap {args.cap}", lambda: pixel_smote(data.images, data.rows[kept], ky, args.k, 0),
         args.size * args.size * 3),
        ("feature", f"cap {args.cap}", lambda: smote(kept_feat, ky, args.k, 0), x_feat.shape[1]),
    ]
    print("\n| space | input | dims | synthetic | seconds | peak MiB |\n|---|---|---:|---:|---:|---:|")
    for space, label, fn, dims in cases:
        seconds, peak, n = measure(fn)
        print(f"| {space} | {label} | {dims} | {n} | {seconds:.2f} | {peak:.0f} |", flush=True)
    print(f"\n(feature space also needs the embeddings once: {embed_s:.1f}s for {len(data.table)} images, "
          "cached afterwards)")


if __name__ == "__main__":
    main()
