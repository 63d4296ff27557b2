"""``lesionlab adapt``: refit a model's calibration and triage operating point on a clinic's labelled images."""

from __future__ import annotations

import argparse

from lesionlab.commands.common import DefaultsHelpFormatter, add_data_args, add_out, checks_model, data_config_from_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "adapt", help="adapt a model's calibration and triage operating point to a clinic's labelled images",
        description="Fit a site temperature (on top of MODEL's own calibration) and the priority-1 thresholds that "
        "reach --sensitivity on a clinic's new cases (split-conformal rule on its labelled images), and write them "
        "as a new model folder (usable wherever "
        "a model is: predict, serve, evaluate). With --method head (or auto, when it cross-validates better) a site "
        "head is first refit on MODEL's frozen features for the classes the clinic has at least 5 images of; the "
        "backbone is never changed. The before/after figures are honest: "
        "repeated 2-fold cross-fitting on lesions decides every image with an adaptation that did not see it "
        "(--repeats halvings; lesion-bootstrap 95 % intervals). Refused: fewer than 30 images or 10 malignant "
        "cases, one class only, images the model trained or validated on, labels outside the model's label set.",
        epilog="example:\n  lesionlab adapt builtin --dataset ph2 --data-root ../shared/data --out models/builtin-ph2 "
        "--sensitivity 0.95",
        formatter_class=DefaultsHelpFormatter)
    p.add_argument("model", help="run directory, ensemble folder, .onnx file, or a built-in name ('builtin')")
    add_data_args(p, dataset_required=True)
    add_out(p, "the adapted model folder to write", required=True)
    p.add_argument("--sensitivity", type=float, default=0.9, help="priority-1 sensitivity the thresholds aim for")
    p.add_argument("--method", default="auto", choices=["auto", "head", "temperature"],
                   help="temperature: site temperature + thresholds only; head: a linear site head on the frozen "
                   "features first; auto: whichever has the lower cross-validated log-loss on these images")
    p.add_argument("--repeats", type=int, default=20, help="random 2-fold halvings for the cross-fitted figures")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", default=None, help="the adapted model's name (default: the folder name)")
    p.set_defaults(func=cmd_adapt)


def _fmt(figures: dict, key: str) -> str:
    ci = figures.get(f"{key}_ci95")
    return f"{figures[key]:.3f}" + (f" ({ci[0]:.3f}-{ci[1]:.3f})" if ci else "")


@checks_model("model")
def cmd_adapt(args: argparse.Namespace) -> int:
    from lesionlab.config import ConfigError
    from lesionlab.engine.adapt import adapt

    if not 0.5 <= args.sensitivity < 1:
        raise ConfigError(f"--sensitivity must lie in [0.5, 1), got {args.sensitivity}")
    if args.repeats < 1:
        raise ConfigError(f"--repeats must be at least 1, got {args.repeats}")
    record = adapt(args.model, data_config_from_args(args), args.out, sensitivity=args.sensitivity,
                   repeats=args.repeats, seed=args.seed, name=args.name, method=args.method)
    before, after, spread = record["before"], record["after_cross_fitted"], record["cross_fitting"]
    print(f"adapted {record['base_model']} to {record['dataset']}: {record['images']} images "
          f"({record['lesions']} lesions), {record['method']}, site temperature {record['temperature']:.3f}")
    print(f"{'':24s} {'before':>22s} {'after (cross-fitted)':>22s}")
    for key in ("priority1_sensitivity", "priority1_specificity", "mel_auc"):
        if key in before:
            print(f"{key:24s} {_fmt(before, key):>22s} {_fmt(after, key):>22s}")
    for key in ("priority1_sensitivity", "priority1_specificity", "mel_auc"):
        if key not in spread:
            continue
        s = spread[key]
        print(f"over {spread['repeats']} halvings, {key}: median {s['median']:.3f} (5th-95th percentile "
              f"{s['p5']:.3f}-{s['p95']:.3f})")
    print(f"adapted model: {args.out} (use it like any model: lesionlab predict {args.out} IMAGE)")
    return 0
