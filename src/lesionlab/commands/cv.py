"""``lesionlab cv``: k-fold cross-validation with a held-out test split, saved as an ensemble."""

from __future__ import annotations

import argparse

from lesionlab.commands.common import add_config_args, add_config_shortcuts, experiment_overrides, load_experiment


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cv", help="k-fold cross-validation with a held-out test split, saved as an ensemble",
                       description=(
                           "Hold out the lesion-disjoint test split of the config, deal the other lesions into K "
                           "lesion-disjoint stratified folds and train one run per fold (fold k validates). Reports "
                           "per-fold test metrics, mean ± std, the ensemble and the ensemble + TTA, with ECE before/"
                           "after temperature scaling. The output folder is an ensemble (ensemble.json) that "
                           "`lesionlab evaluate` and `lesionlab predict` accept like a run. This is the one route to "
                           "the ensemble: `lesionlab train` refuses a config with data.split.folds=K (unless "
                           "data.split.val_fold picks one fold to train alone)."),
                       epilog="example:\n"
                       "  lesionlab cv --config configs/default.yaml train.epochs=10 data.image_size=48 --folds 5\n"
                       "(give the key=value overrides together, before or after the --options)")
    add_config_args(p, overrides_example="train.epochs=5 data.image_size=48")
    add_config_shortcuts(p)
    p.add_argument("--folds", type=int, default=None,
                   help="number of folds K (default: the config's data.split.folds, else 5)")
    p.add_argument("--weights", choices=("equal", "val"), default="equal",
                   help="ensemble weights: equal, or proportional to each member's validation balanced accuracy")
    p.set_defaults(func=cmd_cv, needs_training=True)


def cmd_cv(args: argparse.Namespace) -> int:
    from lesionlab.config import ConfigError

    if args.folds is not None and args.folds < 2:
        raise ConfigError("--folds must be at least 2")
    cfg = load_experiment(args.config, experiment_overrides(args))  # checked before the training stack is imported
    from lesionlab.engine.cv import run_cv

    print_cv(run_cv(cfg, args.folds, weighting=args.weights))
    return 0


def print_cv(result) -> None:
    """The cross-validation summary table, the ensemble's headline line and where its report lies."""
    from lesionlab.reports.cv_report import summary_display

    print(summary_display(result.summary).to_string())
    final = result.summary.iloc[-1]  # ensemble + TTA
    print(f"test balanced accuracy {final['balanced_accuracy']:.4f} | macro AUC {final['auc_macro']:.4f} | "
          f"accuracy {final['accuracy']:.4f} ({result.summary.index[-1]}) | {result.seconds:.0f}s")
    print(f"ensemble: {result.directory.resolve()}")
    print(f"report: {(result.directory / 'report.html').resolve()}")
