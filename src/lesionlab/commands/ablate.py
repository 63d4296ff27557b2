"""``lesionlab ablate``: leave-one-out ablation, the full configuration and one run per removed factor."""

from __future__ import annotations

import argparse

from lesionlab.commands.sweep import add_run_series_args, print_table_result, series_overrides

EPILOG = """examples:
  lesionlab ablate --config configs/focal-ablation.yaml --factors dropout,augment,class_weights,focal
  lesionlab ablate --config configs/default.yaml --factors augment,ema train.epochs=5 data.image_size=32
factors (what removing each one means):
{factors}"""


def register(sub: argparse._SubParsersAction) -> None:
    from lesionlab.engine.ablate_factors import ABLATIONS

    factors = "\n".join(f"  {n:16s} {ABLATIONS.describe(n)}" for n in ABLATIONS)
    p = sub.add_parser(
        "ablate", help="leave-one-out ablation: full config + one run per removed factor, comparison table",
        description="Train the full configuration and, for each factor, the same configuration without it; "
        "compare accuracy, balanced accuracy, macro precision/recall/F1 and per-class recall on the held-out "
        "test split (results.md, report.html; best value per column marked with ★).",
        epilog=EPILOG.format(factors=factors))
    add_run_series_args(p)
    p.add_argument("--factors", required=True, help="comma-separated factors, e.g. dropout,augment,class_weights")
    p.set_defaults(func=cmd_ablate, needs_training=True)


def cmd_ablate(args: argparse.Namespace) -> int:
    overrides = series_overrides(args)  # checked before the training stack is imported
    from lesionlab.engine.ablate import run_ablation

    result = run_ablation(args.config, args.factors, overrides, output_dir=args.output_dir)
    return print_table_result(result, f"{len(result.table)} runs (full + {len(result.table) - 1} leave-one-out)")
