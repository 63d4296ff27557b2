"""``lesionlab augment-preview``: a PNG grid of augmented training images (what the network sees)."""

from __future__ import annotations

import argparse

from lesionlab.commands.common import (
    add_config_args,
    add_config_shortcuts,
    add_out,
    add_output_dir,
    experiment_overrides,
    load_experiment,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "augment-preview", help="write a PNG grid of augmented training images (what the network sees)",
        description="Apply the config's augmentation (train.augmentation: preset + params) to a few training "
        "images, several random views each, and save the grid as a PNG.",
        epilog="example:\n  lesionlab augment-preview --config configs/default.yaml --out /tmp/aug.png "
        "train.augmentation.preset=heavy 'train.augmentation.params={degrees: 10}'")
    add_config_args(p, "YAML experiment file (data + train.augmentation settings)",
                    "train.augmentation.preset=heavy 'train.augmentation.params={degrees: 10}'")
    add_config_shortcuts(p, output_dir=False)
    add_out(p, "PNG path (default: OUTPUT_DIR/augment-preview-<time>.png)")
    add_output_dir(p, "shortcut for output_dir=... (where the default PNG goes)")
    p.add_argument("--images", type=int, default=6, help="number of training images, one row each (default 6)")
    p.add_argument("--views", type=int, default=6, help="augmented views per image (default 6)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_augment_preview, needs_training=True)


def cmd_augment_preview(args: argparse.Namespace) -> int:
    cfg = load_experiment(args.config, experiment_overrides(args))
    from lesionlab.reports.augment_preview import augment_preview

    path = augment_preview(cfg, args.out, n_images=args.images, views=args.views, seed=args.seed)
    print(f"augment preview: {path.resolve()}")
    return 0
