"""``lesionlab sweep``: a grid search, one run per cell, ranked by the validation metric."""

from __future__ import annotations

import argparse

from lesionlab.commands.common import (
    add_config_args,
    add_config_shortcuts,
    add_output_dir,
    experiment_overrides,
    load_experiment,
)

EPILOG = """examples:
  lesionlab sweep --config configs/default.yaml --grid optimizer=adam,sgd,rmsprop lr=1e-2,1e-3
  lesionlab sweep --config configs/default.yaml train.epochs=5 --grid model.backbone=resnet10t,resnet18
keys: short names resolve against train.* (and its groups: optimizer, schedule, loss, sampling, augmentation,
trainer), then model.*, data.*, eval.*; a group's name resolves to its .name (optimizer -> train.optimizer.name);
or give the dotted key. Put the key=value overrides before --grid (every item after --grid is an axis).
each cell is a full run (its own run directory under the sweep directory); cells are ranked by the
validation metric train.monitor, never by test metrics."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sweep", help="grid search: one run per cell + results table (markdown, HTML) + validation curves",
        description="Train one run per combination of the --grid values and compare them: results.csv, "
        "results.md, report.html and figures/val_curves.png in a new sweep directory.", epilog=EPILOG)
    add_run_series_args(p)
    p.add_argument("--grid", nargs="+", required=True, metavar="KEY=V1,V2",
                   help="grid axes, e.g. optimizer=adam,sgd,rmsprop lr=1e-2,1e-3")
    p.set_defaults(func=cmd_sweep, needs_training=True)


def add_run_series_args(p: argparse.ArgumentParser) -> None:
    """The options of a command that trains a series of runs (``sweep``, ``ablate``) into one new folder."""
    add_config_args(p, overrides_example="train.epochs=5 data.image_size=32, applied to every run")
    add_config_shortcuts(p, output_dir=False)
    add_output_dir(p, "parent folder of the sweep/ablation directory (default: the config's output_dir)")


def series_overrides(args: argparse.Namespace) -> list[str]:
    """The overrides of every run; the base config is built and its names checked before anything is written.
    (``--output-dir`` is no override here: it names the parent of the series' folder.)"""
    overrides = experiment_overrides(args, output_dir=False)
    load_experiment(args.config, overrides)
    return overrides


def cmd_sweep(args: argparse.Namespace) -> int:
    overrides = series_overrides(args)  # checked before the training stack is imported
    from lesionlab.engine.sweep import run_sweep

    result = run_sweep(args.config, args.grid, overrides, output_dir=args.output_dir)
    return print_table_result(result, f"{len(result.table)} cells; best by validation: {result.best}")


def print_table_result(result, headline: str) -> int:
    """A sweep's or an ablation's summary line, then where its table and report are."""
    print(headline)
    print(f"results: {(result.directory / 'results.md').resolve()}")
    print(f"report: {(result.directory / 'report.html').resolve()}")
    return 0
