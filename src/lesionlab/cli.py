"""The ``lesionlab`` command line. Each sub-command parses, builds a config and calls one library function."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

logger = logging.getLogger("lesionlab")

#: Modules that contribute top-level sub-commands through ``register(subparsers)``; each keeps its heavy imports
#: inside its command functions so ``lesionlab --help`` stays fast.
COMMAND_MODULES: tuple[str, ...] = ("lesionlab.commands.core", "lesionlab.commands.evaluation",
                                    "lesionlab.commands.serving", "lesionlab.commands.training",
                                    "lesionlab.commands.pretraining", "lesionlab.commands.merge",
                                    "lesionlab.commands.models", "lesionlab.commands.ood",
                                    "lesionlab.commands.released", "lesionlab.commands.study",
                                    "lesionlab.commands.adapt", "lesionlab.commands.shift")

EPILOG = """examples:
  lesionlab train                                   # default: HAM10000, lesion-disjoint 70/15/15, 64 px
  lesionlab train --config configs/default.yaml train.epochs=5 data.image_size=48
  lesionlab evaluate runs/default-... --dataset onehot-csv --csv test_gt.csv --image-dir images/
  lesionlab predict runs/default-... lesion.jpg --format json
  lesionlab data info ham10000
  lesionlab data download ham10000 --data-root ~/data
data root: --data-root > $LESIONLAB_DATA > the user cache dir (see 'lesionlab data info')."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lesionlab", description="Dermatoscopic skin-lesion classification: train, evaluate, predict, report.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(sub)

    from lesionlab.commands import data as data_commands
    from lesionlab.commands.core import register_data

    data_commands.register(register_data(sub))
    return parser


def _configure_logging(verbose: bool, quiet: bool) -> None:
    import warnings

    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", force=True)
    for noisy in ("matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
    if not verbose:  # Lightning's start-up chatter and a deprecation inside its own code say nothing to users
        warnings.filterwarnings("ignore", message=r".*LeafSpec.*")
        warnings.filterwarnings("ignore", message=r".*does not have many workers.*")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.verbose, args.quiet)
    from lesionlab.commands.common import prepare_training
    from lesionlab.errors import USER_ERRORS

    try:
        if getattr(args, "needs_training", False):  # set by the commands that train (they need the [train] extra)
            prepare_training(args.verbose)
        return int(args.func(args) or 0)
    except USER_ERRORS as exc:
        if args.verbose:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
