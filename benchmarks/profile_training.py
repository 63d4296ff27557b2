"""Where a LesionLab training step spends its time: data loading vs forward vs backward + optimiser.

Runs a few batches of the real training loop pieces (the run's DataLoader over the uint8 cache with the light
augmentation per image, or batched on the device with ``--set train.augmentation.mode=batch``; LesionModule
forward/loss, backward, AdamW step) under ``torch.profiler`` with labelled ranges, then
prints the share of wall time per phase and the profiler's top operators.

    python benchmarks/profile_training.py --size 64 --batches 30
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile, record_function

from lesionlab.config import load_config
from lesionlab.data.prepare import prepare_data
from lesionlab.engine.train import make_loaders, resolve_precision
from lesionlab.models.classifier import create_model, default_normalisation
from lesionlab.training.losses import loss_from_config
from lesionlab.training.module import LesionModule
from lesionlab.training.optim import create_optimizer


def main() -> None:
    default_root = os.environ.get("LESIONLAB_DATA", str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", default=default_root)
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--backbone", default="resnet10t")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--batches", type=int, default=30, help="profiled training steps")
    ap.add_argument("--precision", default="auto", help="train.trainer.precision (auto: bf16 where the CPU has it)")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="config overrides, e.g. train.augmentation.preset=standard train.augmentation.mode=batch")
    args = ap.parse_args()
    cfg = load_config(None, [f"data.root={args.data_root}", f"data.image_size={args.size}",
                             f"model.backbone={args.backbone}", f"train.batch_size={args.batch_size}",
                             "train.augmentation.preset=light",
                             *([f"data.cache_dir={args.cache_dir}"] if args.cache_dir else []),
                             *args.set])
    data = prepare_data(cfg.data, progress=False)
    model = create_model(cfg.model, len(data.dataset.class_names)).to(memory_format=torch.channels_last)
    mean, std = default_normalisation(model, False)
    counts = data.table.loc[data.indices("train"), "label"].value_counts().reindex(data.dataset.class_names)
    module = LesionModule(model, loss_from_config(cfg.train, counts.fillna(0).to_numpy()), cfg.train,
                          len(counts), mean, std)
    o = cfg.train.optimizer
    opt = create_optimizer(o.name, model.parameters(), o.lr, o.weight_decay)
    train_loader, _ = make_loaders(data, cfg)
    bf16 = resolve_precision(args.precision).startswith("bf16")
    phases = {"data loading": 0.0, "batched augmentation": 0.0, "forward + loss": 0.0, "backward + step": 0.0}
    it = iter(train_loader)
    module.train()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(args.batches):
            t = time.perf_counter()
            with record_function("data loading"):
                images, targets = next(it)[:2]
            ta = time.perf_counter()
            with record_function("batched augmentation"):  # train.augmentation.mode=batch: on the device, in the step
                if module.batch_augment is not None:
                    images = module.batch_augment(images)
            t1 = time.perf_counter()
            with record_function("forward + loss"), torch.autocast("cpu", torch.bfloat16, enabled=bf16):
                loss = module.loss_fn(module(images), targets)
            t2 = time.perf_counter()
            with record_function("backward + step"):
                opt.zero_grad()
                loss.backward()
                opt.step()
            t3 = time.perf_counter()
            for name, dt in zip(phases, (ta - t, t1 - ta, t2 - t1, t3 - t2), strict=True):
                phases[name] += dt
    total = sum(phases.values())
    print(f"{args.backbone} {args.size}px batch {args.batch_size}, {args.batches} steps, bf16={bf16}, "
          f"workers={train_loader.num_workers}, load {os.getloadavg()[0]:.2f}\n")
    print("| phase | seconds | share |\n|---|---:|---:|")
    for name, dt in phases.items():
        print(f"| {name} | {dt:.2f} | {100 * dt / total:.1f} % |")
    print(f"\n{args.batches * args.batch_size / total:.0f} images/s over the profiled steps\n")
    print(prof.key_averages().table(sort_by="cpu_time_total", row_limit=12))


if __name__ == "__main__":
    main()
