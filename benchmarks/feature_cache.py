"""Head-training epoch on the frozen-backbone feature cache vs re-running the frozen backbone every epoch.

Both arms train the same head (same optimiser, batch size, training images) on a frozen backbone; the cached arm
reads pooled features from the memory-mapped cache, the other recomputes them from the cached pixels each batch
(no augmentation in either, as the cache requires). Goal: the cached epoch is >= 20x faster.

    .venv/bin/python benchmarks/feature_cache.py --data-root ../shared/data --max-samples 2000 --size 64
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lesionlab.config import DataConfig, ModelConfig
from lesionlab.data.prepare import prepare_data
from lesionlab.data.transforms import to_model_input
from lesionlab.models.classifier import create_model, default_normalisation
from lesionlab.models.features import extract_features


def _epoch(model: nn.Module, opt: torch.optim.Optimizer, batches, targets: np.ndarray, batch_size: int,
           from_images: bool, mean: tuple, std: tuple) -> float:
    """Seconds for one pass over ``batches(start, stop)`` (features, or uint8 images through the backbone)."""
    start_t = time.perf_counter()
    order = np.random.default_rng(0).permutation(len(targets))
    for start in range(0, len(order), batch_size):
        idx = np.sort(order[start:start + batch_size])
        x = batches(idx)
        if from_images:
            with torch.no_grad():
                x = model.backbone(to_model_input(x, mean, std))
        logits = model.classify_features(x)
        loss = nn.functional.cross_entropy(logits, torch.from_numpy(targets[idx]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return time.perf_counter() - start_t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default=None, help="data root holding ham10000/ (default: $LESIONLAB_DATA)")
    parser.add_argument("--image-dir", default=None, help="default: <data root>/ham10000/images_200x150 if present")
    parser.add_argument("--backbone", default="efficientnet-lite0")
    parser.add_argument("--pretrained", default="imagenet")
    parser.add_argument("--head", default="gap-bn-dropout")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--max-samples", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3, help="epochs timed per arm (median reported)")
    parser.add_argument("--cache-dir", default=None, help="image + feature caches (default: a temporary folder)")
    args = parser.parse_args()

    image_dir = args.image_dir
    if image_dir is None and args.data_root and (Path(args.data_root) / "ham10000" / "images_200x150").is_dir():
        image_dir = str(Path(args.data_root) / "ham10000" / "images_200x150")
    cache = Path(args.cache_dir or tempfile.mkdtemp(prefix="lesionlab-bench-"))
    data = prepare_data(DataConfig(root=args.data_root, image_dir=image_dir, image_size=args.size,
                                   max_samples=args.max_samples, cache_dir=str(cache)), progress=False)
    train_pos = data.indices("train")
    targets = data.targets()[train_pos]
    cfg = ModelConfig(backbone=args.backbone, pretrained=args.pretrained, head=args.head, freeze_backbone=True)
    torch.manual_seed(0)
    model = create_model(cfg, len(data.dataset.class_names)).train()
    mean, std = default_normalisation(model)

    t0 = time.perf_counter()
    built = extract_features(data, cfg, backbone=model.backbone, mean=mean, std=std, cache_dir=cache / "features",
                             progress=False)
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    feats = extract_features(data, cfg, backbone=model.backbone, mean=mean, std=std, cache_dir=cache / "features",
                             progress=False).features
    load_s = time.perf_counter() - t0
    train_feats = torch.from_numpy(np.asarray(feats[train_pos], dtype=np.float32))
    rows = data.rows[train_pos]

    def from_cache(idx: np.ndarray) -> torch.Tensor:
        return train_feats[idx]

    def from_pixels(idx: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(data.images[rows[idx]])).permute(0, 3, 1, 2)

    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-3)
    cached = [_epoch(model, opt, from_cache, targets, args.batch_size, False, mean, std) for _ in range(args.epochs)]
    images = [_epoch(model, opt, from_pixels, targets, args.batch_size, True, mean, std) for _ in range(args.epochs)]
    c, i = statistics.median(cached), statistics.median(images)
    print(f"backbone {args.backbone} ({cfg.pretrained}), head {args.head}, {args.size}px, "
          f"{len(train_pos)} training images, batch {args.batch_size}, {torch.get_num_threads()} threads")
    print(f"feature cache: built in {build_s:.2f}s ({built.features.shape[0]} x {built.features.shape[1]}), "
          f"reloaded in {load_s:.3f}s")
    print(f"head epoch on cached features : {c:.3f}s  (epochs: {', '.join(f'{t:.3f}' for t in cached)})")
    print(f"head epoch re-running backbone: {i:.3f}s  (epochs: {', '.join(f'{t:.3f}' for t in images)})")
    speedup = i / c
    print(f"speed-up: {speedup:.1f}x per epoch (goal >= 20x: {'met' if speedup >= 20 else 'NOT met'}); "
          f"the cache pays for itself after {build_s / max(i - c, 1e-9):.2f} epochs")


if __name__ == "__main__":
    main()
