"""``lesionlab leakage-audit``: how much an image-level split inflates the metrics; near-duplicate images."""

from __future__ import annotations

import argparse

from lesionlab.commands.common import add_config_args, add_config_shortcuts, experiment_overrides, load_experiment


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("leakage-audit", help="how much an image-level split inflates metrics; near-duplicates",
                       description=(
                           "Train the same configuration twice — on an image-level split (lesion ids ignored, the "
                           "leak behind several published numbers) and on the lesion-disjoint split — and report how "
                           "much the image-level split inflates every test metric. Also lists near-duplicate images "
                           "across the lesion-disjoint splits (perceptual hashes)."),
                       epilog="example:\n  lesionlab leakage-audit --config configs/default.yaml train.epochs=5 "
                       "data.image_size=48 --hash-distance 4")
    add_config_args(p, overrides_example="train.epochs=5 data.image_size=48")
    add_config_shortcuts(p)
    p.add_argument("--hash-distance", type=int, default=4, help="near-duplicate: pHash within this many bits")
    p.add_argument("--duplicates-only", action="store_true", help="only the near-duplicate scan (no training)")
    p.set_defaults(func=cmd_leakage_audit, needs_training=True)


def cmd_leakage_audit(args: argparse.Namespace) -> int:
    cfg = load_experiment(args.config, experiment_overrides(args))  # checked before the training stack is imported
    from lesionlab.engine.leakage_audit import leakage_audit

    result = leakage_audit(cfg, max_distance=args.hash_distance,
                           train_models=not args.duplicates_only)
    if result.inflation is not None:
        print(result.inflation.to_string(float_format=lambda v: f"{v:.4f}"))
    print(result.duplicates.to_string(index=False))
    print(f"report: {(result.directory / 'report.html').resolve()}")
    return 0
