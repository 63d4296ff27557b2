"""``lesionlab compare``: several runs side by side in one report."""

from __future__ import annotations

import argparse

from lesionlab.commands.common import add_out, add_output_dir


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="several runs side by side: metrics table, overlaid learning curves",
                       description="Compare finished runs (or cv folders): a table of their test metrics, overlaid "
                       "learning curves, the overfitting gap and each run's training-dynamics table, in one "
                       "self-contained report.html.",
                       epilog="example:\n  lesionlab compare runs/default-A runs/default-B --out runs/compare-AB")
    p.add_argument("runs", nargs="+", help="run directories")
    add_out(p, "output folder (default: OUTPUT_DIR/compare-<time>)")
    add_output_dir(p, "parent of the report folder (default: the folder holding the first run, i.e. the output "
                   "directory it was trained into)")
    p.set_defaults(func=cmd_compare)


def cmd_compare(args: argparse.Namespace) -> int:
    from lesionlab.reports.compare import compare_runs

    result = compare_runs(args.runs, args.out, output_dir=args.output_dir)
    print(result.table.to_string(float_format=lambda v: f"{v:.4f}"))
    print(f"report: {(result.directory / 'report.html').resolve()}")
    return 0
