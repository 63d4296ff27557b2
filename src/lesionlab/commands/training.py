"""``lesionlab sweep``, ``lesionlab ablate`` and ``lesionlab augment-preview``."""

from __future__ import annotations

import argparse

SWEEP_EPILOG = """examples:
  lesionlab sweep --config configs/default.yaml --grid optimizer=adam,sgd,rmsprop lr=1e-2,1e-3
  lesionlab sweep --config configs/default.yaml train.epochs=5 --grid model.backbone=resnet10t,resnet18
keys: short names resolve against train.* (and its groups: optimizer, schedule, loss, sampling, augmentation,
trainer), then model.*, data.*, eval.*; a group's name resolves to its .name (optimizer -> train.optimizer.name);
or give the dotted key. Put the key=value overrides before --grid (every item after --grid is an axis).
each cell is a full run (its own run directory under the sweep directory); cells are ranked by the
validation metric train.monitor, never by test metrics."""

ABLATE_EPILOG = """examples:
  lesionlab ablate --config configs/focal-ablation.yaml --factors dropout,augment,class_weights,focal
  lesionlab ablate --config configs/default.yaml --factors augment,ema train.epochs=5 data.image_size=32
factors (what removing each one means):
{factors}"""


def _common(p: argparse.ArgumentParser) -> None:
    from lesionlab.commands.common import add_config_args

    add_config_args(p, overrides_example="train.epochs=5 data.image_size=32, applied to every run")
    p.add_argument("--data-root", default=None, help="shortcut for data.root=...")
    p.add_argument("--output-dir", default=None, help="parent folder of the sweep/ablation directory "
                   "(default: the config's output_dir)")


def _overrides(args: argparse.Namespace) -> list[str]:
    """The overrides of every run; the base config is built and its names checked before anything is written."""
    from lesionlab.commands.common import config_overrides, load_experiment, shortcut_overrides

    overrides = config_overrides(args, *shortcut_overrides(args, data_root="data.root"))
    load_experiment(args.config, overrides)
    return overrides


def register(subparsers: argparse._SubParsersAction) -> None:
    from lesionlab.engine.ablation_factors import ABLATIONS

    p = subparsers.add_parser(
        "sweep", help="grid search: one run per cell + results table (markdown, HTML) + validation curves",
        description="Train one run per combination of the --grid values and compare them: results.csv, "
        "results.md, report.html and figures/val_curves.png in a new sweep directory.",
        epilog=SWEEP_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(p)
    p.add_argument("--grid", nargs="+", required=True, metavar="KEY=V1,V2",
                   help="grid axes, e.g. optimizer=adam,sgd,rmsprop lr=1e-2,1e-3")
    p.set_defaults(func=cmd_sweep, needs_training=True)

    factors = "\n".join(f"  {n:16s} {ABLATIONS.describe(n)}" for n in ABLATIONS)
    p = subparsers.add_parser(
        "ablate", help="leave-one-out ablation: full config + one run per removed factor, comparison table",
        description="Train the full configuration and, for each factor, the same configuration without it; "
        "compare accuracy, balanced accuracy, macro precision/recall/F1 and per-class recall on the held-out "
        "test split (results.md, report.html; best value per column marked with ★).",
        epilog=ABLATE_EPILOG.format(factors=factors), formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(p)
    p.add_argument("--factors", required=True, help="comma-separated factors, e.g. dropout,augment,class_weights")
    p.set_defaults(func=cmd_ablate, needs_training=True)

    p = subparsers.add_parser(
        "augment-preview", help="write a PNG grid of augmented training images (what the network sees)",
        description="Apply the config's augmentation (train.augmentation: preset + params) to a few training "
        "images, several random views each, and save the grid as a PNG.",
        epilog="example:\n  lesionlab augment-preview --config configs/default.yaml --out /tmp/aug.png "
        "train.augmentation.preset=heavy 'train.augmentation.params={degrees: 10}'",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    from lesionlab.commands.common import add_config_args

    add_config_args(p, "YAML experiment file (data + train.augmentation settings)",
                    "train.augmentation.preset=heavy 'train.augmentation.params={degrees: 10}'")
    p.add_argument("--data-root", default=None, help="shortcut for data.root=...")
    p.add_argument("--out", default=None, help="PNG path (default: OUTPUT_DIR/augment-preview-<time>.png)")
    p.add_argument("--output-dir", default=None, help="shortcut for output_dir=... (where the default PNG goes)")
    p.add_argument("--images", type=int, default=6, help="number of training images, one row each (default 6)")
    p.add_argument("--views", type=int, default=6, help="augmented views per image (default 6)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_augment_preview, needs_training=True)


def cmd_sweep(args: argparse.Namespace) -> int:
    overrides = _overrides(args)  # checked before the training stack is imported
    from lesionlab.engine.sweep import run_sweep

    result = run_sweep(args.config, args.grid, overrides, output_dir=args.output_dir)
    return _print_table_result(result, f"{len(result.table)} cells; best by validation: {result.best}")


def cmd_ablate(args: argparse.Namespace) -> int:
    overrides = _overrides(args)  # checked before the training stack is imported
    from lesionlab.engine.ablation import run_ablation

    result = run_ablation(args.config, args.factors, overrides, output_dir=args.output_dir)
    return _print_table_result(result, f"{len(result.table)} runs (full + {len(result.table) - 1} leave-one-out)")


def _print_table_result(result, headline: str) -> int:
    """A sweep's or an ablation's summary line, then where its table and report are."""
    print(headline)
    print(f"results: {(result.directory / 'results.md').resolve()}")
    print(f"report: {(result.directory / 'report.html').resolve()}")
    return 0


def cmd_augment_preview(args: argparse.Namespace) -> int:
    from lesionlab.commands.common import config_overrides, load_experiment, shortcut_overrides

    cfg = load_experiment(args.config, config_overrides(
        args, *shortcut_overrides(args, data_root="data.root", output_dir="output_dir")))
    from lesionlab.training.augment_preview import augment_preview

    path = augment_preview(cfg, args.out, n_images=args.images, views=args.views, seed=args.seed)
    print(f"augment preview: {path.resolve()}")
    return 0
