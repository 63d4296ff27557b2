"""The ``lesionlab`` command line. Each sub-command parses, builds a config and calls one library function."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

logger = logging.getLogger("lesionlab")

#: Every top-level command, in the sections and order of ``lesionlab --help``. Command ``NAME`` lives in the module
#: ``lesionlab.commands.NAME`` (dashes as underscores), whose ``register(subparsers)``
#: adds it (a noun group such as ``data`` or ``ood`` adds its sub-commands) and which keeps its heavy imports inside
#: its command functions, so ``lesionlab --help`` stays fast.
SECTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("train, score and use a model", ("train", "cv", "ensemble", "evaluate", "predict", "calibrate", "compare")),
    ("look inside and audit", ("explain", "attention-maps", "robustness", "ood", "leakage-audit", "source-check")),
    ("new sites and shipping", ("transfer-report", "shift", "adapt", "export", "serve", "release", "card")),
    ("experiments", ("sweep", "ablate", "study", "augment-preview", "pretrain", "compare-pretraining", "distill")),
    ("data and building blocks", ("data", "models")),
)

#: Old names of commands that moved under a noun: they fail with a message naming the new command.
RENAMED: dict[str, str] = {"fit-ood": "ood fit", "ood-eval": "ood eval"}

DESCRIPTION = "Dermatoscopic skin-lesion classification: train, evaluate, predict, report."

EPILOG = """examples:
  lesionlab train                                   # default: HAM10000, lesion-disjoint 70/15/15, 64 px
  lesionlab train --config configs/default.yaml train.epochs=5 data.image_size=48
  lesionlab evaluate runs/default-... --dataset onehot-csv --csv test_gt.csv --image-dir images/
  lesionlab predict runs/default-... lesion.jpg --format json
  lesionlab data info ham10000
  lesionlab data download ham10000 --data-root ~/data
data root: --data-root > $LESIONLAB_DATA > the user cache dir (see 'lesionlab data info').
output: --output-dir DIR makes a new run or report folder inside DIR (like output_dir=); --out PATH writes exactly
PATH (a file, or the folder it fills)."""


def command_module(name: str) -> str:
    """The module that holds command ``name``."""
    return f"lesionlab.commands.{name.replace('-', '_')}"


def build_parser() -> argparse.ArgumentParser:
    from lesionlab.commands.common import Parser

    parser = Parser(prog="lesionlab", usage="%(prog)s [-h] [-v] [-q] COMMAND ...", description=DESCRIPTION,
                    epilog=EPILOG)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, help=argparse.SUPPRESS,
                                prog="lesionlab")  # "lesionlab train ...", not the custom usage line, in sub-usages
    for _, names in SECTIONS:
        for name in names:
            importlib.import_module(command_module(name)).register(sub)
    parser.description = f"{DESCRIPTION}\n\n{_command_listing(sub)}"
    return parser


def _command_listing(sub: argparse._SubParsersAction) -> str:
    """The commands by section, each with its one-line help (``lesionlab COMMAND --help`` says more)."""
    import shutil
    import textwrap

    helps = {action.dest: action.help or "" for action in sub._choices_actions}
    width = max(shutil.get_terminal_size().columns - 2, 60)
    lines = ["commands (lesionlab COMMAND --help shows a command's options and an example):"]
    for title, names in SECTIONS:
        lines.append(f"\n{title}:")
        for name in names:
            label = f"{name} ..." if isinstance(sub.choices[name]._subparsers, argparse._ArgumentGroup) else name
            wrapped = textwrap.wrap(helps[name], width - 24) or [""]
            lines.append(f"  {label:20s}  {wrapped[0]}")
            lines.extend(f"{'':24s}{more}" for more in wrapped[1:])
    return "\n".join(lines)


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
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((arg for arg in argv if not arg.startswith("-")), None)
    if command in RENAMED:  # no silent aliases: say where the command went
        print(f"error: 'lesionlab {command}' is now 'lesionlab {RENAMED[command]}'", file=sys.stderr)
        return 2
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
