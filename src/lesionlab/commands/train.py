"""``lesionlab train``: train a model; its route (one fit, refit, refit ensemble, cross-validation, resume) is
planned by :mod:`lesionlab.engine.workflow`."""

from __future__ import annotations

import argparse

from lesionlab.commands.common import (
    add_config_args,
    add_config_shortcuts,
    config_overrides,
    load_experiment,
    shortcut_overrides,
)
from lesionlab.config import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train + evaluate on the held-out test split + write the HTML report",
                       description="Train a model. Defaults ← --config YAML ← key=value overrides "
                       "(e.g. train.epochs=10 train.optimizer.lr=1e-3 model.backbone=resnet18 data.image_size=96). "
                       "Every registered name (loss, optimizer, backbone, eval.tta, ...) is checked first. "
                       "The resolved config, splits, checkpoints, metrics, figures and report.html go to a new "
                       "run directory under output_dir. A config with data.split.folds=K (K >= 2, no val_fold) "
                       "is refused: the K-fold cross-validation ensemble is trained by `lesionlab cv`. "
                       "With train.refit=true, as in configs/default.yaml, it trains a train-only run (its validation "
                       "split picks the epoch and fits the calibration; the test split is not predicted) and then "
                       "refits the recipe on training + validation lesions: the refit is evaluated and reported. "
                       "With train.refit_ensemble=true as well (the default config) the two fits are saved as one "
                       "equal-weight ensemble folder, and that ensemble is evaluated and reported instead.",
                       epilog="example:\n  lesionlab train --config configs/default.yaml train.epochs=10 "
                       "train.loss.name=focal --data-root ../shared/data")
    add_config_args(p, overrides_example="train.epochs=10 train.optimizer.lr=1e-3 data.image_size=96")
    add_config_shortcuts(p)
    p.add_argument("--skip-bad", action="store_true", help="shortcut for data.skip_bad=true")
    p.add_argument("--devices", default=None, help="shortcut for train.trainer.devices=... (2, auto, 0,1)")
    p.add_argument("--num-nodes", type=int, default=None,
                   help="shortcut for train.trainer.num_nodes=... (multi-node DDP)")
    p.add_argument("--strategy", default=None,
                   help="shortcut for train.trainer.strategy=... (auto, ddp, ddp_spawn, fsdp)")
    p.add_argument("--precision", default=None,
                   help="shortcut for train.trainer.precision=... (auto, 32-true, bf16-mixed, 16-mixed)")
    p.add_argument("--resume", default=None, metavar="RUN_DIR",
                   help="continue a killed run from RUN_DIR/checkpoints/last.ckpt with RUN_DIR/config.yaml "
                   "(same run directory; only where-it-runs overrides such as train.trainer.devices are accepted)")
    p.add_argument("--refit", default=None, metavar="RUN_DIR",
                   help="train RUN_DIR's recipe again on its training + validation lesions (the test split stays "
                   "held out) for its full train.epochs, and ship RUN_DIR's temperature, triage thresholds and "
                   "unsure threshold, which were fitted on the validation split (a release; see configs/release.yaml). "
                   "The refit is scored on the test split, whatever RUN_DIR's eval.test: add eval.test=false to keep "
                   "it unscored when it will only be scored as part of an ensemble (lesionlab ensemble ... --test)")
    p.set_defaults(func=cmd_train, needs_training=True)


def cmd_train(args: argparse.Namespace) -> int:
    overrides = config_overrides(args, *shortcut_overrides(
        args, data_root="data.root", output_dir="output_dir", skip_bad="data.skip_bad",
        devices="train.trainer.devices", num_nodes="train.trainer.num_nodes", strategy="train.trainer.strategy",
        precision="train.trainer.precision"))
    if args.config and (args.resume or args.refit):
        raise ConfigError(f"--{'resume' if args.resume else 'refit'} reads RUN_DIR/config.yaml; drop --config")
    # the config is checked before Lightning and the engine are imported, so a typo is answered in a second
    cfg = None if args.resume or args.refit else load_experiment(args.config, overrides)
    from lesionlab.engine.workflow import plan_training, run_training

    plan = plan_training(cfg, refit_of=args.refit, resume=args.resume, overrides=overrides)
    outcome = run_training(plan)
    if outcome.sibling is not None:
        _print_refit_job(outcome)
    result = outcome.shipped
    m = result.metrics
    if not m:  # a non-zero DDP rank (rank 0 evaluates and reports), or an unscored ensemble (eval.test=false)
        return 0
    if "balanced_accuracy" not in m:  # eval.test=false
        print(f"validation balanced accuracy {m.get('val_bal_acc', float('nan')):.4f} | macro AUC "
              f"{m.get('val_auc', float('nan')):.4f} (best epoch {m['best_epoch']}; test split untouched) | "
              f"{result.seconds['total']:.0f}s\nrun: {result.run.root.resolve()}")
        return 0
    print(f"test balanced accuracy {m['balanced_accuracy']:.4f} | macro AUC {m['auc_macro']:.4f} | "
          f"accuracy {m['accuracy']:.4f} | {result.seconds['total']:.0f}s")
    print(f"report: {result.run.report.resolve()}")
    return 0


def _print_refit_job(job) -> None:
    """Say where the runs of a refit job are; the shipped model's own figures (refit or ensemble) follow."""
    m = job.sibling.metrics
    print(f"train-only run (calibrates the refit): validation balanced accuracy "
          f"{m.get('val_bal_acc', float('nan')):.4f} (best epoch {m.get('best_epoch')}) | "
          f"{job.sibling.run.root.resolve()}")
    print(f"refit on training + validation lesions: {job.refit.run.root.resolve()} | training wall time of "
          f"both fits {job.fit_seconds / 60:.1f} min")
    if job.ensemble is not None:
        scored = "the model evaluated" if job.ensemble.metrics else "not scored: eval.test=false"
        print(f"ensemble of both fits (train.refit_ensemble; {scored}): {job.ensemble.run.root.resolve()}")
