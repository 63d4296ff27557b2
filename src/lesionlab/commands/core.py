"""The core commands: ``train``, ``evaluate``, ``predict`` and ``data info``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lesionlab.commands.common import (
    add_config_args,
    add_data_args,
    collect_images,
    config_overrides,
    data_config_from_args,
    load_experiment,
    shortcut_overrides,
    split_model_argument,
)
from lesionlab.config import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train + evaluate on the held-out test split + write the HTML report",
                       description="Train a model. Defaults ← --config YAML ← key=value overrides "
                       "(e.g. train.epochs=10 train.optimizer.lr=1e-3 model.backbone=resnet18 data.image_size=96). "
                       "Every registered name (loss, optimizer, backbone, eval.tta, ...) is checked first. "
                       "The resolved config, splits, checkpoints, metrics, figures and report.html go to a new "
                       "run directory under output_dir. A config with data.split.folds=K (K >= 2, no val_fold) "
                       "trains the K-fold cross-validation ensemble of `lesionlab cv` instead: one member per fold, "
                       "evaluated together on the held-out test split. "
                       "With train.refit=true, as in configs/default.yaml, it trains a train-only run (its validation "
                       "split picks the epoch and fits the calibration; the test split is not predicted) and then "
                       "refits the recipe on training + validation lesions: the refit is evaluated and reported. "
                       "With train.refit_ensemble=true as well (the default config) the two fits are saved as one "
                       "equal-weight ensemble folder, and that ensemble is evaluated and reported instead.",
                       epilog="example:\n  lesionlab train --config configs/default.yaml train.epochs=10 "
                       "train.loss.name=focal --data-root ../shared/data",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(p, overrides_example="train.epochs=10 train.optimizer.lr=1e-3 data.image_size=96")
    p.add_argument("--data-root", default=None, help="shortcut for data.root=...")
    p.add_argument("--output-dir", default=None, help="shortcut for output_dir=...")
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

    p = sub.add_parser("evaluate", help="evaluate a trained run on any dataset (never on its training images)",
                       description="Score RUN on a dataset with the run's own crop and size. Labels are mapped "
                       "into the model's taxonomy. Images or lesions used for training/validation are refused "
                       "unless --exclude-seen drops them.")
    p.add_argument("run", help="run directory (holds model.pt), or 'builtin' / a built-in model name")
    add_data_args(p)
    p.add_argument("--exclude-seen", action="store_true", help="drop images/lesions the run trained or validated on")
    p.add_argument("--out", default=None, help="output folder (default: RUN/evaluations/<dataset>-<time>)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="top-k diagnoses + triage priority for images",
                       description="Predict with a trained run, or with the built-in model when no model is given. "
                       "Prints the top-k diagnoses with probabilities and the triage priority (1 = malignant "
                       "MEL/BCC/SCC, 2 = AK/nevus, 3 = benign).",
                       epilog="examples:\n  lesionlab predict lesion.jpg            # the built-in model\n"
                       "  lesionlab predict runs/default-... lesion.jpg more_images/\n"
                       "  lesionlab predict --model model.onnx lesion.jpg --format json",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("images", nargs="+", metavar="IMAGE",
                   help="image files or folders, optionally preceded by a model (run directory, model.pt, .onnx, "
                   "ensemble manifest, or 'builtin' / a built-in name)")
    p.add_argument("--model", default=None, help="the model (default: the first argument when it is a model, "
                   "else the built-in model)")
    p.add_argument("--topk", type=int, default=3, help="how many diagnoses to list (default 3)")
    p.add_argument("--format", choices=("table", "json", "csv"), default="table", help="output format")
    p.add_argument("--output", default=None, help="write to this file instead of stdout")
    p.add_argument("--quality", action="append", default=[], metavar="KEY=VALUE",
                   help="input quality gate setting (min_side, max_aspect, min_contrast, min_brightness, "
                   "max_brightness, max_clipped, min_sharpness, enabled=false); repeatable")
    p.set_defaults(func=cmd_predict)



def register_data(sub: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """The ``data`` command group with ``info``; returns its sub-parsers for the other data commands."""
    data = sub.add_parser("data", help="dataset tools: info, download, build-dermamnist")
    dsub = data.add_subparsers(dest="data_command", metavar="DATA_COMMAND", required=True)
    p = dsub.add_parser("info", help="counts per class, lesions, images, licence and citation")
    p.add_argument("name", help="dataset name")
    p.add_argument("--data-root", default=None)
    p.add_argument("--image-dir", default=None)
    p.add_argument("--csv", default=None)
    p.add_argument("--taxonomy", default=None)
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--skip-bad", action="store_true")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_data_info, dataset=None)
    return dsub


def cmd_train(args: argparse.Namespace) -> int:
    overrides = config_overrides(args, *shortcut_overrides(
        args, data_root="data.root", output_dir="output_dir", skip_bad="data.skip_bad",
        devices="train.trainer.devices", num_nodes="train.trainer.num_nodes", strategy="train.trainer.strategy",
        precision="train.trainer.precision"))
    # the config is checked before Lightning and the engine are imported, so a typo is answered in a second
    cfg = None if args.resume or args.refit else load_experiment(args.config, overrides)
    from lesionlab.engine.crossval import wants_cv
    from lesionlab.engine.train import train

    if args.resume:
        result = _resume_train(args, overrides)
    elif args.refit:
        result = train(_refit_config(args, overrides))
    else:
        if cfg.train.refit:  # train-only run, then its refit on train + val (the one evaluated on test)
            from lesionlab.engine.refit_job import train_and_refit

            result = _print_refit_job(train_and_refit(cfg))
        elif wants_cv(cfg):  # data.split.folds >= 2: the K-fold cross-validation ensemble (= lesionlab cv)
            from lesionlab.commands.evaluation import print_cv
            from lesionlab.engine.crossval import run_cv

            print_cv(run_cv(cfg))
            return 0
        else:
            result = train(cfg)
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


def _print_refit_job(job):
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
    return job.shipped


def _resume_train(args: argparse.Namespace, overrides: list[str]):
    from lesionlab.engine.refit_job import resumed_refit, resumed_refit_job
    from lesionlab.engine.train import train
    from lesionlab.runs import RunPaths
    from lesionlab.training.resume import ResumeError, resume_config

    if args.config:
        raise ResumeError("--resume reads RUN_DIR/config.yaml; drop --config")
    run_dir = Path(args.resume)
    if not run_dir.is_dir():
        raise ResumeError(f"cannot resume {run_dir}: no such run directory")
    cfg = resume_config(run_dir, overrides)
    result = train(cfg, RunPaths(run_dir), resume=True)
    job = None
    if result.metrics:  # the train-only run of a refit job, or the refit of one that ships both fits as an ensemble
        job = resumed_refit_job(result, cfg) or resumed_refit(result, cfg)
    return _print_refit_job(job) if job else result


def _refit_config(args: argparse.Namespace, overrides: list[str]):
    from lesionlab.engine.calibration_source import refit_config

    if args.config:
        raise ConfigError("--refit reads RUN_DIR/config.yaml; drop --config")
    return refit_config(args.refit, overrides)


def cmd_evaluate(args: argparse.Namespace) -> int:
    import datetime as _dt

    from lesionlab.released.registry import is_released_ref, resolve_model_ref

    resolve_model_ref(args.run)  # a mistyped run or dataset fails before the evaluation stack is imported
    from lesionlab.data.datasets import DATASETS

    DATASETS.get(args.dataset)
    from lesionlab.engine.evaluate import evaluate_run

    out = args.out
    if out is None and is_released_ref(args.run):  # never write into the installed package
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        out = Path("runs") / "evaluations" / f"{Path(resolve_model_ref(args.run)).name}-{args.dataset}-{stamp}"
    result = evaluate_run(resolve_model_ref(args.run), data_config_from_args(args), out_dir=out,
                          exclude_seen=args.exclude_seen, progress=not args.quiet)
    m = result.metrics
    print(f"{m['n']} images | balanced accuracy {m['balanced_accuracy']:.4f} | macro AUC {m['auc_macro']:.4f} | "
          f"accuracy {m['accuracy']:.4f}" + (f" | {result.excluded} seen images excluded" if result.excluded else ""))
    print(f"report: {(result.directory / 'report.html').resolve()}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    if args.topk < 1:
        raise ConfigError("--topk must be at least 1")
    model, images = split_model_argument(args.model, args.images)  # a given model that does not exist fails here
    paths, skipped = collect_images(images)  # so do missing images: both before the model loads
    if not paths:
        raise ConfigError("no images found in the given paths" + (
            f" (skipped {len(skipped)} files that are not images: {', '.join(map(str, skipped[:3]))})"
            if skipped else ""))
    from lesionlab.inference.quality import QualityConfig
    from lesionlab.serving.formatting import format_predictions
    from lesionlab.serving.predictor import ImageError, Predictor

    predictor = Predictor.load(model, quality=QualityConfig.from_overrides(args.quality))
    results, errors = predictor.predict_files(paths, topk=args.topk)
    errors += [ImageError(str(p), "not_an_image", f"{p}: skipped: not an image file (extension {p.suffix or 'none'})")
               for p in skipped]
    text = format_predictions(results, predictor.class_names, args.format, errors)
    if args.output:
        Path(args.output).write_text(text)
    else:
        sys.stdout.write(text)
    seen = [r.source for r in results if r.seen_in_training]
    if seen:
        listed = ", ".join(seen[:5]) + (", ..." if len(seen) > 5 else "")
        print(f"warning: {len(seen)} of {len(results)} images were used to train or validate this model (by image or "
              f"lesion id: {listed}); their predictions look better than the model does on new images", file=sys.stderr)
    for err in errors:
        print(f"error: {err}", file=sys.stderr)
    return 1 if errors else 0


def cmd_data_info(args: argparse.Namespace) -> int:
    from lesionlab.data.datasets import load_dataset
    from lesionlab.data.info import DATASET_INFO

    args.dataset = args.name
    ds = load_dataset(data_config_from_args(args))
    summary = ds.summary()
    if args.name in DATASET_INFO:
        info = DATASET_INFO.get(args.name)
        summary.update({"title": info.title, "licence": info.licence, "citation": info.citation,
                        "homepage": info.homepage, "modality": info.modality})
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"{summary.get('title', ds.name)}  [{ds.taxonomy.name}]")
    patients = f", patients {summary['patients']}" if summary.get("patients") else ""
    print(f"  images {summary['images']}, lesions {summary['lesions']}{patients}, age missing {summary['age_missing']}")
    width = max(len(c) for c in summary["classes"])
    for cls, n in summary["classes"].items():
        print(f"  {cls:{width}s} {n:6d}  {ds.taxonomy.descriptions.get(cls, '')}")
    for key, value in ds.notes.items():  # loader findings, e.g. the near-duplicate check's counts
        print(f"  {key.replace('_', ' ')}: " + (", ".join(f"{k.replace('_', ' ')} {v}" for k, v in value.items())
                                                 if isinstance(value, dict) else str(value)))
    if "licence" in summary:
        print(f"  modality: {summary['modality']} | url: {summary['homepage']}")
        print(f"  licence: {summary['licence']}\n  cite: {summary['citation']}")
    return 0
