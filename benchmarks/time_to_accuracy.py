"""Time to accuracy: wall-clock minutes of fitting until validation balanced accuracy first reaches 0.60, 0.65 and
0.70, for the old default (scratch ResNet-10-T at 64 px), the new default (ImageNet transfer) and the plain timm +
ImageFolder peer of ``train_throughput.py`` — in one run on one machine, so the minutes compare.

Every side trains on the same lesion-disjoint split of the shared HAM10000 images and is judged on the same
validation images after every epoch (the test split is never predicted). Writes a learning-curve plot.

    python benchmarks/time_to_accuracy.py                      # the published table
    python benchmarks/time_to_accuracy.py --quick              # 2 epochs each on 2,000 images: a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
TARGETS = (0.60, 0.65, 0.70)


def lesionlab_side(config: str, data_root: str, out: str, extra: list[str]) -> dict:
    from lesionlab.config import load_config
    from lesionlab.engine.train import train

    cfg = load_config(REPO / config, [f"data.root={data_root}", f"output_dir={out}", "eval.test=false",
                                      "train.progress=false", "eval.gradcam_images=0", *extra])
    result = train(cfg)
    history = pd.read_csv(result.run.history)
    return {"run": str(result.run.root), "epoch_s": history["seconds"].tolist(),
            "epoch_bal_acc": history["val_bal_acc"].tolist(), "fit_s": result.seconds["fit"]}


def minutes_to(side: dict, target: float) -> float | None:
    elapsed = 0.0
    for seconds, acc in zip(side["epoch_s"], side["epoch_bal_acc"], strict=True):
        elapsed += seconds
        if acc >= target:
            return elapsed / 60
    return None


def _child(argv: list[str]) -> dict:
    proc = subprocess.run([sys.executable, __file__, *argv], capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"{argv[:2]} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def plot(rows: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name, side in rows.items():
        minutes = pd.Series(side["epoch_s"]).cumsum() / 60
        ax.plot(minutes, side["epoch_bal_acc"], marker="o", ms=3, label=name)
    for t in TARGETS:
        ax.axhline(t, color="grey", lw=0.6, ls=":")
    ax.set_xlabel("fit wall-clock minutes (this machine)")
    ax.set_ylabel("validation balanced accuracy")
    ax.set_title("Time to accuracy, HAM10000 7 classes (lesion-disjoint validation split)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> None:
    default_root = os.environ.get("LESIONLAB_DATA", str(REPO.parent / "shared" / "data"))
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", default=default_root, help="folder holding ham10000/ (default: ../shared/data)")
    p.add_argument("--old", default="configs/scratch-baseline.yaml", help="the old default config")
    p.add_argument("--new", default="configs/default.yaml", help="the new default config")
    p.add_argument("--peer-epochs", type=int, default=20, help="epochs of the timm + ImageFolder peer")
    p.add_argument("--quick", action="store_true", help="2 epochs each on 2,000 images (a smoke run)")
    p.add_argument("--out", default=str(Path(tempfile.gettempdir()) / "lesionlab-time-to-accuracy"))
    p.add_argument("--plot", default=str(REPO / "docs" / "results" / "time-to-accuracy.png"))
    p.add_argument("--side", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    quick = ["train.epochs=2", "data.max_samples=2000"] if args.quick else []
    if args.side:  # a child process: one side, so each is timed alone
        if args.side == "peer":
            sys.path.insert(0, str(HERE))
            from train_throughput import peer_side

            old = lesionlab_side(args.old, args.data_root, args.out, [*quick, "train.epochs=1"])  # the split only
            ns = argparse.Namespace(data_root=args.data_root, size=64, backbone="resnet10t", batch_size=64,
                                    epochs=2 if args.quick else args.peer_epochs, precision="32-true",
                                    max_images=2000 if args.quick else None, cache_dir=None, set=[], fast_set=[],
                                    out=args.out, side="peer", run=old["run"], peer_workers=min(2, os.cpu_count()))
            print(json.dumps(peer_side(ns)))
        else:
            print(json.dumps(lesionlab_side(args.old if args.side == "old" else args.new, args.data_root, args.out,
                                            quick)))
        return
    raw = sys.argv[1:] if argv is None else argv
    rows = {"old default (scratch)": _child([*raw, "--side", "old"]),
            "new default (ImageNet transfer)": _child([*raw, "--side", "new"]),
            "timm + ImageFolder peer": _child([*raw, "--side", "peer"])}
    print(f"load {os.getloadavg()[0]:.2f}; {os.cpu_count()} cores")
    print(f"{'side':34} " + " ".join(f"{'to ' + format(t, '.2f'):>9}" for t in TARGETS) + "  fit min  best val")
    for name, side in rows.items():
        cells = [minutes_to(side, t) for t in TARGETS]
        print(f"{name:34} " + " ".join(f"{'never' if c is None else f'{c:.1f} min':>9}" for c in cells)
              + f"  {sum(side['epoch_s']) / 60:7.1f}  {max(side['epoch_bal_acc']):.4f}")
    Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
    plot(rows, Path(args.plot))
    print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
