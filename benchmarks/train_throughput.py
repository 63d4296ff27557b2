"""Peer benchmark: a plain timm + torchvision ``ImageFolder`` training loop vs ``lesionlab train``, same images.

Both train the same backbone at the same resolution, batch size, epochs, optimiser (AdamW + one-cycle) and
inverse-frequency class weights on the same lesion-disjoint train/validation split of the shared HAM10000 images.
The peer is what a typical user writes: an ImageFolder of (symlinked) JPEGs, decoded, cropped and resized every
epoch in ``DataLoader`` workers, fp32. LesionLab decodes once into a uint8 memory-mapped cache and trains with
channels-last + the config's precision (bf16 autocast on CPUs with AVX512-BF16). Each side runs in its own
subprocess so peak RSS is its own. A third row, ``lesionlab-fast``, adds LesionLab's opt-in speed-ups (batched
augmentation on the device and progressive resizing by default; ``--fast-set`` picks any of them) to the same recipe.

Prints images/s (and the ratio to the peer), s/epoch, peak memory, the final validation balanced accuracy, the
per-epoch validation balanced accuracy, and the time-to-accuracy: fit seconds until a side first reaches the peer's
final validation balanced accuracy (the equal-accuracy comparison of DAWNBench/FFCV-style reports).

    python benchmarks/train_throughput.py                               # the published figures (6 epochs)
    python benchmarks/train_throughput.py --epochs 2 --max-images 2000  # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def lesionlab_side(args: argparse.Namespace) -> dict:
    import pandas as pd

    from lesionlab.config import load_config
    from lesionlab.engine.train import train

    cfg = load_config(None, _overrides(args))
    result = train(cfg)
    history = pd.read_csv(result.run.history)
    n_train = int((pd.read_csv(result.run.splits)["split"] == "train").sum())
    fit = result.seconds["fit"]
    return {"side": args.side, "run": str(result.run.root), "train_images": n_train, "fit_s": fit,
            "data_s": result.seconds["data"], "s_per_epoch": float(history["seconds"].mean()),
            "images_per_s": n_train * args.epochs / fit, "val_bal_acc": float(history["val_bal_acc"].iloc[-1]),
            "epoch_s": history["seconds"].tolist(), "epoch_bal_acc": history["val_bal_acc"].tolist(),
            "precision": cfg.train.trainer.precision, "peak_rss_mb": _peak_rss_mb()}


def peer_side(args: argparse.Namespace) -> dict:
    """The reference loop a typical user writes (kept deliberately plain)."""
    import numpy as np
    import pandas as pd
    import timm
    import torch
    from sklearn.metrics import balanced_accuracy_score
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    from lesionlab.config import load_config
    from lesionlab.data.datasets import load_dataset

    t0 = time.perf_counter()
    cfg = load_config(None, _overrides(args))
    paths = load_dataset(cfg.data).table.set_index("image_id")["path"]
    splits = pd.read_csv(Path(args.run) / "splits.csv", dtype={"image_id": str})  # LesionLab's split, same images
    root = Path(tempfile.mkdtemp(prefix="peer-imagefolder-"))
    for row in splits[splits["split"] != "test"].itertuples():
        folder = root / row.split / row.label
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{row.image_id}.jpg").symlink_to(paths[row.image_id])
    norm = transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    train_tf = transforms.Compose([transforms.Resize(args.size), transforms.CenterCrop(args.size),
                                   transforms.RandomHorizontalFlip(), transforms.RandomVerticalFlip(),
                                   transforms.ToTensor(), norm])
    val_tf = transforms.Compose([transforms.Resize(args.size), transforms.CenterCrop(args.size),
                                 transforms.ToTensor(), norm])
    train_ds, val_ds = datasets.ImageFolder(root / "train", train_tf), datasets.ImageFolder(root / "val", val_tf)
    workers = args.peer_workers
    train_dl = DataLoader(train_ds, batch_size=args.batch_size, shuffle=True, num_workers=workers, drop_last=True)
    val_dl = DataLoader(val_ds, batch_size=256, num_workers=workers)
    counts = np.bincount(train_ds.targets, minlength=len(train_ds.classes))
    weights = torch.tensor(len(train_ds) / (len(counts) * np.maximum(counts, 1)), dtype=torch.float32)
    torch.manual_seed(0)
    model = timm.create_model(args.backbone, num_classes=len(train_ds.classes), drop_rate=0.2)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=args.epochs * len(train_dl))
    loss_fn = torch.nn.CrossEntropyLoss(weight=weights)
    setup = time.perf_counter() - t0
    epochs, accs = [], []
    for _ in range(args.epochs):
        t = time.perf_counter()
        model.train()
        for x, y in train_dl:
            opt.zero_grad()
            loss_fn(model(x), y).backward()
            opt.step()
            sched.step()
        model.eval()
        preds, truth = [], []
        with torch.no_grad():
            for x, y in val_dl:
                preds.append(model(x).argmax(1))
                truth.append(y)
        accs.append(float(balanced_accuracy_score(torch.cat(truth), torch.cat(preds))))
        epochs.append(time.perf_counter() - t)
    fit = sum(epochs)
    return {"side": "peer", "train_images": len(train_ds), "fit_s": fit, "data_s": setup,
            "s_per_epoch": fit / len(epochs), "images_per_s": len(train_ds) * args.epochs / fit,
            "val_bal_acc": accs[-1], "epoch_s": epochs, "epoch_bal_acc": accs, "precision": "32-true",
            "workers": workers, "peak_rss_mb": _peak_rss_mb()}


def _overrides(args: argparse.Namespace) -> list[str]:
    return [f"data.root={args.data_root}", f"data.image_size={args.size}", f"model.backbone={args.backbone}",
            f"train.epochs={args.epochs}", f"train.batch_size={args.batch_size}", f"output_dir={args.out}",
            "name=throughput", "train.progress=false", "eval.tta=none", "eval.gradcam_images=0",
            f"train.trainer.precision={args.precision}", "model.drop_rate=0.2", "train.augmentation.preset=light",
            *([f"data.max_samples={args.max_images}"] if args.max_images else []),
            *([f"data.cache_dir={args.cache_dir}"] if args.cache_dir else []), *args.set,
            *(args.fast_set if args.side == "lesionlab-fast" else [])]


def time_to_accuracy(side: dict, target: float) -> float | None:
    """Fit seconds until the end of the first epoch whose validation balanced accuracy reaches ``target``."""
    elapsed = 0.0
    for seconds, acc in zip(side["epoch_s"], side["epoch_bal_acc"], strict=True):
        elapsed += seconds
        if acc >= target:
            return elapsed
    return None


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 + \
        resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # + the largest loader worker


def _run_side(side: str, argv: list[str], extra: list[str] = ()) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--side", side, *argv, *extra], capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"{side} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


FAST = ["train.augmentation.mode=batch", "train.speedups.progressive_resize=0.5"]


def main(argv: list[str] | None = None) -> None:
    default_root = os.environ.get("LESIONLAB_DATA", str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", default=default_root, help="folder holding ham10000/ (default: ../shared/data)")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--size", type=int, default=64, help="image size in pixels")
    p.add_argument("--backbone", default="resnet10t", help="any timm name (both sides)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--max-images", type=int, default=None, help="stratified subset (default: all 10,015)")
    p.add_argument("--precision", default="auto", help="LesionLab's train.trainer.precision (the peer stays fp32)")
    p.add_argument("--peer-workers", type=int, default=min(2, os.cpu_count() or 1), help="peer DataLoader workers")
    p.add_argument("--cache-dir", default=None, help="LesionLab image cache (default: the user cache)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="extra LesionLab config overrides")
    p.add_argument("--fast-set", nargs="*", default=FAST, metavar="KEY=VALUE",
                   help="overrides of the third row, LesionLab with its opt-in speed-ups (default: %(default)s)")
    p.add_argument("--no-fast", action="store_true", help="skip the speed-up row")
    p.add_argument("--out", default=str(Path(tempfile.gettempdir()) / "lesionlab-throughput"))
    p.add_argument("--side", choices=("lesionlab", "lesionlab-fast", "peer"), default=None, help=argparse.SUPPRESS)
    p.add_argument("--run", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.side:
        print(json.dumps((peer_side if args.side == "peer" else lesionlab_side)(args)))
        return
    raw = sys.argv[1:] if argv is None else argv
    ours = _run_side("lesionlab", raw)
    rows = [_run_side("peer", raw, ["--run", ours["run"]]), ours]
    if not args.no_fast:
        rows.append(_run_side("lesionlab-fast", raw))
    peer = rows[0]
    print(f"{args.backbone} {args.size}px batch {args.batch_size} x {args.epochs} epochs, "
          f"{ours['train_images']} training images; load {os.getloadavg()[0]:.2f}")
    print(f"{'':15} {'images/s':>9} {'ratio':>6} {'s/epoch':>8} {'peak MB':>8} {'val bal acc':>11} "
          f"{'to peer acc':>11}  per-epoch val bal acc")
    for r in rows:
        reach = time_to_accuracy(r, peer["val_bal_acc"])
        print(f"{r['side']:15} {r['images_per_s']:9.1f} {r['images_per_s'] / peer['images_per_s']:5.2f}x "
              f"{r['s_per_epoch']:8.1f} {r['peak_rss_mb']:8.0f} {r['val_bal_acc']:11.4f} "
              f"{'never' if reach is None else f'{reach:.1f}s':>11}  "
              + " ".join(f"{a:.3f}" for a in r["epoch_bal_acc"]))
    print(f"LesionLab data preparation {ours['data_s']:.1f}s (cache), peer setup {peer['data_s']:.1f}s")
    for r in rows[1:]:
        reach = time_to_accuracy(r, peer["val_bal_acc"])
        if reach is not None:
            print(f"{r['side']}: reaches the peer's final validation balanced accuracy "
                  f"({peer['val_bal_acc']:.4f}) after {reach:.1f}s of fitting, "
                  f"{peer['fit_s'] / reach:.1f}x sooner than the peer's {peer['fit_s']:.1f}s")
    print("lesionlab-fast:", " ".join(args.fast_set) if not args.no_fast else "skipped")


if __name__ == "__main__":
    main()
