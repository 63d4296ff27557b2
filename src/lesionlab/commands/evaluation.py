"""Evaluation-depth sub-commands: ``cv``, ``compare``, ``calibrate``, ``explain``, ``robustness``, ``leakage-audit``.

Each parses its arguments, builds a config where it trains, and calls one library function; heavy imports stay
inside the command functions so ``lesionlab --help`` stays fast.
"""

from __future__ import annotations

import argparse

from lesionlab.commands.common import add_run_data_root, checks_model


def _experiment_args(p: argparse.ArgumentParser) -> None:
    from lesionlab.commands.common import add_config_args

    add_config_args(p, overrides_example="train.epochs=5 data.image_size=48")
    p.add_argument("--data-root", default=None, help="shortcut for data.root=...")
    p.add_argument("--output-dir", default=None, help="shortcut for output_dir=...")


def _load_experiment(args: argparse.Namespace):
    from lesionlab.commands.common import config_overrides, load_experiment, shortcut_overrides

    return load_experiment(args.config, config_overrides(
        args, *shortcut_overrides(args, data_root="data.root", output_dir="output_dir")))


def _csv_list(text: str | None, kind=str) -> list | None:
    from lesionlab.config import ConfigError

    try:
        return None if not text else [kind(t.strip()) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ConfigError(f"expected a comma-separated list of {kind.__name__} values, got {text!r}") from None


def register(sub: argparse._SubParsersAction) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser("cv", help="k-fold cross-validation with a held-out test split, saved as an ensemble",
                       formatter_class=fmt, description=(
                           "Hold out the lesion-disjoint test split of the config, deal the other lesions into K "
                           "lesion-disjoint stratified folds and train one run per fold (fold k validates). Reports "
                           "per-fold test metrics, mean ± std, the ensemble and the ensemble + TTA, with ECE before/"
                           "after temperature scaling. The output folder is an ensemble (ensemble.json) that "
                           "`lesionlab evaluate` and `lesionlab predict` accept like a run.\n\nexample:\n"
                           "  lesionlab cv --config configs/default.yaml train.epochs=10 data.image_size=48 --folds 5\n"
                           "(give the key=value overrides together, before or after the --options)"))
    _experiment_args(p)
    p.add_argument("--folds", type=int, default=None,
                   help="number of folds K (default: the config's data.split.folds, else 5)")
    p.add_argument("--weights", choices=("equal", "val"), default="equal",
                   help="ensemble weights: equal, or proportional to each member's validation balanced accuracy")
    p.set_defaults(func=cmd_cv, needs_training=True)

    p = sub.add_parser("ensemble", help="combine trained runs (seeds, recipes, refits) into one ensemble folder",
                       formatter_class=fmt, description=(
                           "Average the temperature-scaled probabilities of several trained runs of one task (run "
                           "directories, or ensemble folders whose members are taken in) into one ensemble folder "
                           "(ensemble.json) that evaluate, predict, serve and release accept like a run. Members "
                           "must share classes, crop, normalisation and the held-out test split; image sizes may "
                           "differ (images are read at the largest and resized for smaller members).\n\n"
                           "Operating point: when every member validated on the same lesions and none trained on "
                           "them (train-only runs of one split, e.g. seeds), the priority-1 thresholds and the unsure "
                           "threshold are fitted on the ensemble's validation predictions, and the ensemble's and "
                           "each member's validation figures are printed. When a member is a refit, no validation "
                           "lesion is unseen: copy a train-only member's with --thresholds-from. The test split is "
                           "scored only with --test, once.\n\nexamples:\n"
                           "  lesionlab ensemble runs/default-2026* --name seeds\n"
                           "  lesionlab ensemble runs/recipe-search/search-* --select 4 --name chosen\n"
                           "  lesionlab ensemble runs/default-ensemble-A runs/default-ensemble-B "
                           "--thresholds-from runs/default-A --test"))
    p.add_argument("runs", nargs="+", help="run directories or ensemble folders (two members or more in all)")
    p.add_argument("--name", default="ensemble", help="folder name prefix (default: ensemble)")
    p.add_argument("--output-dir", default=None, help="parent of the ensemble folder (default: the folder holding "
                   "the first run)")
    p.add_argument("--weights", type=float, nargs="+", default=None, metavar="W",
                   help="one non-negative weight per member, in order (default: equal)")
    p.add_argument("--thresholds-from", default=None, metavar="RUN",
                   help="copy this run's triage thresholds and unsure threshold instead of fitting them on validation")
    p.add_argument("--select", type=int, default=None, metavar="K",
                   help="keep at most K of the runs (2 or more), chosen greedily on their shared validation lesions: "
                   "start from the best run and add whichever raises the ensemble's macro AUC (then balanced "
                   "accuracy) most, until nothing does (selection.csv shows the path; the validation figures are "
                   "then optimistic, the test split judges the choice)")
    p.add_argument("--test", action="store_true", help="score the held-out test split once and write report.html")
    add_run_data_root(p)
    p.set_defaults(func=cmd_ensemble)

    p = sub.add_parser("compare", help="several runs side by side: metrics table, overlaid learning curves",
                       description="Compare finished runs (or cv folders): a table of their test metrics, overlaid "
                       "learning curves, the overfitting gap and each run's training-dynamics table, in one "
                       "self-contained report.html.")
    p.add_argument("runs", nargs="+", help="run directories")
    p.add_argument("--out", default=None, help="output folder (default: OUTPUT_DIR/compare-<time>)")
    p.add_argument("--output-dir", default=None, help="parent of the report folder (default: the folder holding the "
                   "first run, i.e. the output directory it was trained into)")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("calibrate", help="refit temperature + priority-1 thresholds on a run's validation split",
                       description="Fit the temperature (NLL on the validation split) and the priority-1 class "
                       "thresholds (sensitivity target on validation) of a finished run, store them in its model.pt "
                       "(the predictor applies them) and report ECE/Brier before and after, and the operating points, "
                       "on its held-out test split.")
    p.add_argument("run", help="run directory")
    add_run_data_root(p)
    p.add_argument("--no-temperature", action="store_true", help="keep T = 1 (thresholds only)")
    p.add_argument("--sensitivity", type=float, default=None,
                   help="sensitivity target of the priority-1 thresholds on validation (default: the run's "
                   "eval.triage_sensitivity, 0.9 where it is null)")
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser("explain", help="Grad-CAM / Grad-CAM++ heat-maps, CAM-in-lesion score, gallery",
                       description="Without IMAGES: explain the run's held-out test split — Grad-CAM of the predicted "
                       "class, the CAM-in-lesion score (share of heat-map mass inside the lesion mask) per class and "
                       "a gallery of correct and wrong predictions. With IMAGES: one overlay PNG per image.")
    p.add_argument("run", help="run directory or ensemble folder")
    p.add_argument("images", nargs="*", help="image files or folders (default: the run's test split)")
    p.add_argument("--method", choices=("gradcam", "gradcam++"), default=None,
                   help="CAM method (default: the run's eval.gradcam_method)")
    p.add_argument("--masks", default=None, help="lesion-mask folder (<id>_segmentation.png; default: the run's "
                   "eval.mask_dir, else beside the data)")
    p.add_argument("--max-images", type=int, default=200, help="test images to explain (class-balanced sample)")
    p.add_argument("--per-class", type=int, default=3, help="gallery: correct and wrong examples per class")
    add_run_data_root(p)
    p.add_argument("--out", default=None, help="output folder (default: RUN/explain/<time>)")
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("robustness", help="balanced error under 15 image corruptions x 5 severities",
                       description="Score a run (or ensemble) on its held-out test split under image corruptions "
                       "(noise, blur, brightness/contrast, JPEG, pixelate, black corners, ink characters) at "
                       "severities 1-5: balanced error per corruption and severity, relative to clean; table, plot, "
                       "report.")
    p.add_argument("run", help="run directory or ensemble folder")
    p.add_argument("--corruptions", default=None, help="comma-separated subset (default: all)")
    p.add_argument("--severities", default="1,2,3,4,5", help="comma-separated severities (default 1,2,3,4,5)")
    p.add_argument("--max-images", type=int, default=None, help="stratified subset of the test split")
    p.add_argument("--tta", default=None, help="TTA policy for this evaluation, e.g. none (1 view), flips, d4 "
                   "(default: the run's eval.tta)")
    add_run_data_root(p)
    p.add_argument("--out", default=None, help="output folder (default: RUN/robustness/<time>)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random corruptions")
    p.set_defaults(func=cmd_robustness)

    p = sub.add_parser("leakage-audit", help="how much an image-level split inflates metrics; near-duplicates",
                       formatter_class=fmt, description=(
                           "Train the same configuration twice — on an image-level split (lesion ids ignored, the "
                           "leak behind several published numbers) and on the lesion-disjoint split — and report how "
                           "much the image-level split inflates every test metric. Also lists near-duplicate images "
                           "across the lesion-disjoint splits (perceptual hashes).\n\nexample:\n  lesionlab "
                           "leakage-audit --config configs/default.yaml train.epochs=5 data.image_size=48 "
                           "--hash-distance 4"))
    _experiment_args(p)
    p.add_argument("--hash-distance", type=int, default=4, help="near-duplicate: pHash within this many bits")
    p.add_argument("--duplicates-only", action="store_true", help="only the near-duplicate scan (no training)")
    p.set_defaults(func=cmd_leakage_audit, needs_training=True)
    _register_transfer(sub)


def _register_transfer(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("transfer-report", help="one model on several datasets: the shift table in one HTML report",
                       formatter_class=argparse.RawDescriptionHelpFormatter, description=(
                           "Score RUN on each dataset with its own crop and size: balanced accuracy, macro AUC, "
                           "calibration error, melanoma AUC and priority-1 sensitivity/specificity at the model's "
                           "stored triage operating point (95 % CIs, lesions resampled) and the OOD-flag rate when "
                           "the model carries an OOD detector. Diagnoses outside the model's classes are reported, "
                           "not dropped; images, lesions or patients the model trained on are refused.\n\nexample:\n"
                           "  lesionlab transfer-report runs/default-XXXX --datasets test ph2 isic2020 "
                           "--data-root ../shared/data\n\nNo labels yet? `lesionlab shift MODEL FOLDER` compares a "
                           "clinic's unlabelled images with the model's test data (class mix, OOD rate, MMD test)."))
    p.add_argument("run", help="run directory or ensemble folder")
    p.add_argument("--datasets", nargs="+", required=True, metavar="NAME",
                   help="dataset names (ph2, isic2018, isic2020, pad_ufes_20, derm7pt, ham10000, ...); 'test' is the "
                   "run's own held-out test split")
    p.add_argument("--data-root", default=None, help="data root of the sets (default: $LESIONLAB_DATA, then the cache)")
    p.add_argument("--option", action="append", default=[], metavar="NAME:KEY=VALUE",
                   help="dataset option, e.g. derm7pt:image=clinic or isic2018:parts=test (repeatable)")
    p.add_argument("--exclude-seen", action="store_true", help="drop seen images instead of refusing")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples of lesions (default 1000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-ood", action="store_true", help="skip the OOD detector even when the model has one")
    p.add_argument("--out", default=None, help="output folder (default: RUN/transfer/<time>)")
    p.set_defaults(func=cmd_transfer_report)


def _dataset_options(items: list[str]) -> dict[str, dict[str, str]]:
    from lesionlab.config import ConfigError

    out: dict[str, dict[str, str]] = {}
    for item in items:
        name, sep, rest = item.partition(":")
        if not sep or "=" not in rest:
            raise ConfigError(f"--option {item!r} must look like DATASET:KEY=VALUE (e.g. derm7pt:image=clinic)")
        key, value = rest.split("=", 1)
        out.setdefault(name, {})[key] = value
    return out


def predictor_ood_flagger(run: str):
    """Per-image OOD flags from the predictor, when the model carries an OOD detector; else ``None``.

    Read defensively: a prediction without an ``ood`` field (or with ``None``) means no detector; an image the
    predictor rejects as not assessable counts as flagged.
    """
    import functools

    import numpy as np

    from lesionlab.serving.predictor import Predictor

    load = functools.cache(lambda: Predictor.load(run))  # loaded when first asked, after the sets were checked

    def flags(paths):
        if not paths:
            return None
        predictor = load()
        probe, _ = predictor.predict_files(paths[:1])
        if not probe or getattr(probe[0], "ood", None) is None:
            return None
        results, errors = predictor.predict_files(paths)
        by_path = {r.source: getattr(r, "ood", None) for r in results}
        rejected = {e.split(": ", 1)[0] for e in errors}
        return np.array([1.0 if p in rejected else np.nan if by_path.get(p) is None else float(bool(by_path[p]))
                         for p in paths])

    return flags


def cmd_transfer_report(args: argparse.Namespace) -> int:
    from lesionlab.config import ConfigError, DataConfig
    from lesionlab.data.datasets import load_dataset
    from lesionlab.released.registry import resolve_model_ref

    if args.bootstrap < 0:
        raise ConfigError("--bootstrap must be 0 (no intervals) or more")
    resolve_model_ref(args.run)
    options = _dataset_options(args.option)
    for name in args.datasets:  # every set checked before the engine, the model and any image load
        if name != "test":
            load_dataset(DataConfig(dataset=name, root=args.data_root, options=options.get(name, {})))
    from lesionlab.engine.transfer_report import transfer_report

    ood = None if args.no_ood else predictor_ood_flagger(args.run)
    result = transfer_report(args.run, args.datasets, data_root=args.data_root,
                             options=options, exclude_seen=args.exclude_seen, ood=ood,
                             n_boot=args.bootstrap, seed=args.seed, out_dir=args.out, progress=not args.quiet)
    print(result.table.to_string(float_format=lambda v: f"{v:.4f}"))
    if not result.outside.empty:
        print("\noutside the model's classes:")
        print(result.outside.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"report: {(result.directory / 'report.html').resolve()}")
    return 0


def cmd_cv(args: argparse.Namespace) -> int:
    from lesionlab.config import ConfigError

    if args.folds is not None and args.folds < 2:
        raise ConfigError("--folds must be at least 2")
    cfg = _load_experiment(args)  # checked before the training stack is imported
    from lesionlab.engine.crossval import run_cv

    print_cv(run_cv(cfg, args.folds, weighting=args.weights))
    return 0


def cmd_ensemble(args: argparse.Namespace) -> int:
    from pathlib import Path

    from lesionlab.engine.runs_ensemble import ensemble_runs

    result = ensemble_runs(args.runs, args.output_dir or Path(args.runs[0]).resolve().parent, args.name,
                           weights=args.weights, thresholds_from=args.thresholds_from, test=args.test,
                           data_root=args.data_root, progress=True, select=args.select)
    import pandas as pd

    members = result.run.root / "members.csv"
    if members.is_file():
        print(pd.read_csv(members).to_string(index=False))
    m = result.metrics
    selection = result.run.root / "selection.csv"
    if selection.is_file():
        print(f"greedy selection on validation:\n{pd.read_csv(selection).to_string(index=False)}")
    if "val_bal_acc" in m:
        print(f"ensemble of {m['members']}: validation balanced accuracy {m['val_bal_acc']:.4f} | macro AUC "
              f"{m['val_auc']:.4f} ({m['val_images']} images no member trained on; the operating point was fitted "
              "there)")
    if "balanced_accuracy" in m:
        print(f"test balanced accuracy {m['balanced_accuracy']:.4f} | macro AUC {m['auc_macro']:.4f}")
        print(f"report: {(result.run.root / 'report.html').resolve()}")
    print(f"ensemble: {result.run.root.resolve()}")
    return 0


def print_cv(result) -> None:
    """The cross-validation summary table, the ensemble's headline line and where its report lies."""
    from lesionlab.reports.crossval_report import summary_display

    print(summary_display(result.summary).to_string())
    final = result.summary.iloc[-1]  # ensemble + TTA
    print(f"test balanced accuracy {final['balanced_accuracy']:.4f} | macro AUC {final['auc_macro']:.4f} | "
          f"accuracy {final['accuracy']:.4f} ({result.summary.index[-1]}) | {result.seconds:.0f}s")
    print(f"ensemble: {result.directory.resolve()}")
    print(f"report: {(result.directory / 'report.html').resolve()}")


def cmd_compare(args: argparse.Namespace) -> int:
    from lesionlab.reports.compare import compare_runs

    result = compare_runs(args.runs, args.out, output_dir=args.output_dir)
    print(result.table.to_string(float_format=lambda v: f"{v:.4f}"))
    print(f"report: {(result.directory / 'report.html').resolve()}")
    return 0


@checks_model()
def cmd_calibrate(args: argparse.Namespace) -> int:
    from lesionlab.config import ConfigError
    from lesionlab.engine.recalibrate import recalibrate_run

    if args.sensitivity is not None and not 0 < args.sensitivity < 1:
        raise ConfigError("--sensitivity must lie in (0, 1)")
    s = recalibrate_run(args.run, data_root=args.data_root, calibrate=not args.no_temperature,
                        triage_sensitivity=args.sensitivity)
    print(f"temperature {s['temperature']:.3f} | test ECE {s['before']['ece']:.4f} -> {s['after']['ece']:.4f} | "
          f"Brier {s['before']['brier']:.4f} -> {s['after']['brier']:.4f} | thresholds {s['thresholds']}")
    return 0


@checks_model()
def cmd_explain(args: argparse.Namespace) -> int:
    from lesionlab.commands.common import expand_images
    from lesionlab.config import ConfigError

    if args.max_images < 1 or args.per_class < 1:
        raise ConfigError("--max-images and --per-class must be at least 1")
    images = expand_images(args.images)  # a missing image fails before the run loads
    from lesionlab.engine.explain_run import explain_files, explain_test_split

    if args.images:
        out = explain_files(args.run, images, method=args.method, mask_dir=args.masks, out_dir=args.out)
    else:
        out = explain_test_split(args.run, method=args.method, mask_dir=args.masks, max_images=args.max_images,
                                 per_class=args.per_class, data_root=args.data_root, out_dir=args.out)
    print(f"explanations: {out.resolve()}")
    return 0


@checks_model()
def cmd_robustness(args: argparse.Namespace) -> int:
    from lesionlab.engine.robustness import evaluate_robustness

    result = evaluate_robustness(args.run, out_dir=args.out, corruptions=_csv_list(args.corruptions),
                                 severities=_csv_list(args.severities, int) or [], max_images=args.max_images,
                                 tta=args.tta, data_root=args.data_root, seed=args.seed)
    print(f"clean balanced error {result.clean_error:.4f}")
    print(result.table.to_string(float_format=lambda v: f"{v:.4f}"))
    print(f"report: {(result.directory / 'report.html').resolve()}")
    return 0


def cmd_leakage_audit(args: argparse.Namespace) -> int:
    cfg = _load_experiment(args)  # checked before the training stack is imported
    from lesionlab.engine.leakage import leakage_audit

    result = leakage_audit(cfg, max_distance=args.hash_distance,
                           train_models=not args.duplicates_only)
    if result.inflation is not None:
        print(result.inflation.to_string(float_format=lambda v: f"{v:.4f}"))
    print(result.duplicates.to_string(index=False))
    print(f"report: {(result.directory / 'report.html').resolve()}")
    return 0
