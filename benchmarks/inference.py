"""Inference speed on real images: eager PyTorch vs ``torch.compile`` vs ONNX Runtime, batch 1 and 16.

Inputs are real HAM10000 images from LesionLab's uint8 cache (centre-square crop at the model's size), normalised
exactly as the predictor does. ``torch.compile`` needs a C++ compiler on CPU; when it fails the row says why.
Without RUN an untrained ``--backbone`` model is timed (speed does not depend on the weights).

    python benchmarks/inference.py --backbone resnet10t --size 64 --threads 2
    python benchmarks/inference.py runs/default-XXXX
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lesionlab.config import ModelConfig, load_config
from lesionlab.data.prepare import prepare_data
from lesionlab.data.transforms import to_model_input
from lesionlab.models.checkpoint import Preprocessing
from lesionlab.models.classifier import create_model, default_normalisation
from lesionlab.serving.model_loading import load_torch
from lesionlab.serving.onnx import OnnxModule, export_onnx


def time_calls(fn: nn.Module, batches: list[torch.Tensor], warmup: int) -> np.ndarray:
    with torch.inference_mode():
        for x in batches[:warmup]:
            fn(x)
        out = []
        for x in batches[warmup:]:
            t = time.perf_counter()
            fn(x)
            out.append(time.perf_counter() - t)
    return np.array(out)


def main() -> None:
    default_root = os.environ.get("LESIONLAB_DATA", str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", nargs="?", help="run directory (default: an untrained --backbone model)")
    ap.add_argument("--backbone", default="resnet10t")
    ap.add_argument("--size", type=int, default=64, help="input size without RUN")
    ap.add_argument("--data-root", default=default_root)
    ap.add_argument("--cache-dir", default=None, help="LesionLab image cache (default: the user cache)")
    ap.add_argument("--images", type=int, default=400, help="real images to cycle through")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--calls", type=int, default=60, help="timed calls per setting")
    ap.add_argument("--warmup", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    if args.run:
        model, prep, _ = load_torch(Path(args.run) / "model.pt")
    else:
        model = create_model(ModelConfig(backbone=args.backbone), 7)
        mean, std = default_normalisation(model, False)
        prep = Preprocessing(args.size, "center-square", mean, std, tuple("abcdefg"), "ham7")
    model.eval()
    cfg = load_config(None, [f"data.root={args.data_root}", f"data.image_size={prep.image_size}",
                             f"data.max_samples={args.images}",
                             *([f"data.cache_dir={args.cache_dir}"] if args.cache_dir else [])])
    data = prepare_data(cfg.data, progress=False, with_split=False)
    pixels = torch.from_numpy(np.asarray(data.images[data.rows]))  # (N, H, W, 3) uint8, real images
    rng = np.random.default_rng(0)

    def batches(size: int) -> list[torch.Tensor]:
        picks = [rng.choice(len(pixels), size) for _ in range(args.warmup + args.calls)]
        return [to_model_input(pixels[p].permute(0, 3, 1, 2), prep.mean, prep.std) for p in picks]

    backends: dict[str, nn.Module | str] = {"eager": model}
    try:
        compiled = torch.compile(model)
        with torch.inference_mode():
            compiled(batches(1)[0])
        backends["torch.compile"] = compiled
    except Exception as exc:  # report why compile is unavailable
        backends["torch.compile"] = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:100]}"
    with tempfile.TemporaryDirectory() as tmp:
        export_onnx(model, prep, Path(tmp) / "model.onnx")
        backends["ONNX Runtime"] = OnnxModule(Path(tmp) / "model.onnx", threads=args.threads)
        print(f"{args.run or 'untrained ' + args.backbone}, {prep.image_size} px, {len(pixels)} real images, "
              f"{args.threads} threads, torch {torch.__version__}, load {os.getloadavg()[0]:.2f}\n")
        print("| backend | batch | images/s | mean latency ms | p95 ms |")
        print("|---|---:|---:|---:|---:|")
        for batch in (1, 16):
            data_batches = batches(batch)
            for name, fn in backends.items():
                if isinstance(fn, str):
                    print(f"| {name} | {batch} | – | {fn} | |")
                    continue
                t = time_calls(fn, data_batches, args.warmup)
                print(f"| {name} | {batch} | {batch / t.mean():.0f} | {1e3 * t.mean():.2f} | "
                      f"{1e3 * np.percentile(t, 95):.2f} |")


if __name__ == "__main__":
    main()
