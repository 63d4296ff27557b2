"""``lesionlab evaluate``: score a trained run (or ensemble, or built-in model) on any dataset."""

from __future__ import annotations

import argparse
from pathlib import Path

from lesionlab.commands.common import add_data_args, add_out, data_config_from_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="evaluate a trained run on any dataset (never on its training images)",
                       description="Score RUN on a dataset with the run's own crop and size. Labels are mapped "
                       "into the model's taxonomy. Images or lesions used for training/validation are refused "
                       "unless --exclude-seen drops them.",
                       epilog="examples:\n  lesionlab evaluate runs/default-... --dataset ph2 "
                       "--data-root ../shared/data\n"
                       "  lesionlab evaluate runs/default-... --dataset onehot-csv --csv test_gt.csv "
                       "--image-dir images/")
    p.add_argument("run", help="run directory (holds model.pt), or 'builtin' / a built-in model name")
    add_data_args(p)
    p.add_argument("--exclude-seen", action="store_true", help="drop images/lesions the run trained or validated on")
    add_out(p, "output folder (default: RUN/evaluations/<dataset>-<time>)")
    p.set_defaults(func=cmd_evaluate)


def cmd_evaluate(args: argparse.Namespace) -> int:
    import datetime as _dt

    from lesionlab.builtin.registry import is_builtin_ref, resolve_model_ref

    resolve_model_ref(args.run)  # a mistyped run or dataset fails before the evaluation stack is imported
    from lesionlab.data.datasets import DATASETS

    DATASETS.get(args.dataset)
    from lesionlab.engine.evaluate import evaluate_run

    out = args.out
    if out is None and is_builtin_ref(args.run):  # never write into the installed package
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        out = Path("runs") / "evaluations" / f"{Path(resolve_model_ref(args.run)).name}-{args.dataset}-{stamp}"
    result = evaluate_run(resolve_model_ref(args.run), data_config_from_args(args), out_dir=out,
                          exclude_seen=args.exclude_seen, progress=not args.quiet)
    m = result.metrics
    print(f"{m['n']} images | balanced accuracy {m['balanced_accuracy']:.4f} | macro AUC {m['auc_macro']:.4f} | "
          f"accuracy {m['accuracy']:.4f}" + (f" | {result.excluded} seen images excluded" if result.excluded else ""))
    print(f"report: {(result.directory / 'report.html').resolve()}")
    return 0
