"""Eager PyTorch vs ONNX Runtime on CPU: images/s and p95 latency of the classifier's forward pass, batch 1 and 16.

Both arms run the same weights on the same normalised float32 input with the same number of threads; the ONNX arm
includes the tensor → numpy → tensor round trip the predictor pays. Goal: ONNX Runtime >= 3x eager at batch 1.
Without RUN an untrained model of ``--backbone`` is used (speed does not depend on the weights).

    .venv/bin/python benchmarks/inference_onnx_vs_eager.py runs/default-XXXX --threads 2
    .venv/bin/python benchmarks/inference_onnx_vs_eager.py --backbone resnet10t --size 64
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

from lesionlab.config import ModelConfig
from lesionlab.models.checkpoint import Preprocessing
from lesionlab.models.classifier import create_model, default_normalisation
from lesionlab.serving.model_loading import load_torch
from lesionlab.serving.onnx import OnnxModule, export_onnx


def latencies(fn: nn.Module, x: torch.Tensor, repeats: int, warmup: int) -> list[float]:
    with torch.inference_mode():
        for _ in range(warmup):
            fn(x)
        out = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn(x)
            out.append(time.perf_counter() - t)
    return out


def summarise(name: str, batch: int, times: list[float]) -> dict:
    arr = np.array(times)
    return {"backend": name, "batch": batch, "images_per_s": batch / arr.mean(),
            "p50_ms": 1e3 * float(np.percentile(arr, 50)), "p95_ms": 1e3 * float(np.percentile(arr, 95))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", nargs="?", help="run directory (default: an untrained --backbone model)")
    ap.add_argument("--backbone", default="resnet10t")
    ap.add_argument("--size", type=int, default=64, help="input size without RUN (default 64)")
    ap.add_argument("--threads", default="1,2", help="intra-op thread counts to compare, same for both backends "
                    "(default 1,2)")
    ap.add_argument("--repeats", type=int, default=200, help="timed calls per setting (default 200)")
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--batches", default="1,16")
    args = ap.parse_args()

    if args.run:
        model, prep, _ = load_torch(Path(args.run) / "model.pt")
        label = f"{Path(args.run).name}"
    else:
        model = create_model(ModelConfig(backbone=args.backbone), 7)
        mean, std = default_normalisation(model, False)
        prep = Preprocessing(args.size, "center-square", mean, std, tuple("abcdefg"), "ham7")
        label = f"untrained {args.backbone}"
    model.eval()
    size = prep.image_size
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / "model.onnx"
        export_onnx(model, prep, onnx_path)
        for threads in (int(t) for t in args.threads.split(",")):
            torch.set_num_threads(threads)
            ort = OnnxModule(onnx_path, threads=threads)
            for batch in (int(b) for b in args.batches.split(",")):
                x = torch.randn(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
                repeats = max(20, args.repeats // max(1, batch // 4))
                eager = summarise("eager PyTorch", batch, latencies(model, x, repeats, args.warmup))
                onnx = summarise("ONNX Runtime", batch, latencies(ort, x, repeats, args.warmup))
                with torch.inference_mode():
                    onnx["max_dprob"] = float((model(x).softmax(-1) - ort(x).softmax(-1)).abs().max())
                for r in (eager, onnx):
                    r.update(threads=threads, speedup=r["images_per_s"] / eager["images_per_s"])
                rows += [eager, onnx]
    print(f"\n{label}, {size} px, torch {torch.__version__}, {os.cpu_count()} CPUs\n")
    print("| threads | backend | batch | images/s | p50 ms | p95 ms | vs eager |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['threads']} | {r['backend']} | {r['batch']} | {r['images_per_s']:.0f} | {r['p50_ms']:.2f} | "
              f"{r['p95_ms']:.2f} | {r['speedup']:.2f}x |")
    print(f"\nmax |Δprob| eager vs ORT: {max(r.get('max_dprob', 0.0) for r in rows):.1e}")
    for r in rows:
        if r["batch"] == 1 and r["backend"] == "ONNX Runtime":
            verdict = "met" if r["speedup"] >= 3 else "NOT met"
            print(f"batch 1, {r['threads']} thread(s): ONNX Runtime {r['speedup']:.2f}x eager (goal >= 3x: {verdict})")

if __name__ == "__main__":
    main()
