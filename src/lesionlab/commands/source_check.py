"""``lesionlab source-check``: can a quick classifier tell a merged dataset's sources apart?"""

from __future__ import annotations

import argparse
import json

from lesionlab.commands.common import (
    DefaultsHelpFormatter,
    add_config_args,
    add_config_shortcuts,
    experiment_overrides,
    load_experiment,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "source-check", help="warn when the sources of a merged dataset can be told apart from the images",
        description="Fit a logistic regression that predicts each image's source (the 'source' column, e.g. of "
        "data.dataset=merged) from down-sampled pixels or colour statistics, with lesion-grouped cross-validation, "
        "and compare its balanced accuracy with chance and with a diagnosis-only baseline. Exit code 0 either way; "
        "the message says WARNING when the sources are distinguishable by at least --margin above chance.",
        epilog="example:\n  lesionlab source-check data.dataset=merged "
        "'data.options={sources: [{dataset: ham10000}, {dataset: ph2}], taxonomy: triage}' --features colour-stats",
        formatter_class=DefaultsHelpFormatter)
    add_config_args(p, "experiment YAML whose data section describes the (merged) dataset", "data.image_size=32")
    add_config_shortcuts(p, output_dir=False)
    p.add_argument("--features", default="pixels", help="pixels | colour-stats")
    p.add_argument("--margin", type=float, default=0.15, help="warn at balanced accuracy >= chance + margin")
    p.add_argument("--folds", type=int, default=5, help="lesion-grouped cross-validation folds")
    p.add_argument("--max-images", type=int, default=4000, help="random subset size (keeps the check fast)")
    p.add_argument("--json", default=None, metavar="PATH", help="also write the result as JSON")
    p.set_defaults(func=cmd_source_check, needs_training=True)  # its config is checked like any other


def cmd_source_check(args: argparse.Namespace) -> int:
    from lesionlab.config import ConfigError
    from lesionlab.data.prepare import prepare_data
    from lesionlab.data.source_check import source_shortcut_check

    if not 0 < args.margin < 1 or args.folds < 2 or args.max_images < 4:
        raise ConfigError("--margin must lie in (0, 1), --folds be at least 2 and --max-images at least 4")
    cfg = load_experiment(args.config, experiment_overrides(args, output_dir=False))
    data = prepare_data(cfg.data, progress=False, with_split=False)
    result = source_shortcut_check(data, features=args.features, folds=args.folds, margin=args.margin,
                                   max_images=args.max_images, seed=cfg.data.split.seed)
    print(f"sources: {result.sources} ({result.images} images checked, {result.folds}-fold lesion-grouped CV)")
    print(result.message)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result.to_dict(), f, indent=2)
    return 0
