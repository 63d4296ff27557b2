"""``lesionlab card`` (a model card as Markdown) and ``lesionlab release`` (package a run as a released model)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lesionlab.commands.common import checks_model
from lesionlab.released.registry import RELEASED, resolve_model_ref


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("card", help="a model's card as Markdown (built-in model, released folder, run or ensemble)",
                       description="Print the model card: training data and licence, how it was built, test "
                       "figures with 95 % bootstrap intervals (own test split and external sets), calibration, the "
                       "triage operating point, intended use and limitations. MODEL defaults to the built-in model; "
                       f"built-in names: {', '.join(RELEASED)}. A run or ensemble folder gets a shorter card "
                       "computed from its metrics.json, marked as not a released model.")
    p.add_argument("model", nargs="?", default=None, help="built-in name (or 'builtin'), a released model folder, "
                   "or a run or ensemble folder")
    p.add_argument("--json", action="store_true", help="print card.json instead of Markdown")
    p.add_argument("--output", default=None, help="write to this file instead of stdout")
    p.set_defaults(func=cmd_card)

    p = sub.add_parser("release", help="package a trained run as a released model folder with its card",
                       description="Copy a run's weights in half precision (or int8), export ONNX, store the images "
                       "it saw, and evaluate the packaged model once on its held-out test split and on each --external "
                       "dataset (seen images excluded) to write card.json.")
    p.add_argument("run", help="trained run directory")
    p.add_argument("--name", required=True, help="released model name")
    p.add_argument("--out", required=True, help="output folder (e.g. src/lesionlab/released/models/NAME)")
    p.add_argument("--data-root", required=True, help="data root holding the run's dataset and the external sets")
    p.add_argument("--external", nargs="*", default=[], help="external datasets to evaluate on (e.g. ph2)")
    p.add_argument("--command", default="", help="the command that trained the run (recorded in the card)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples (default 1000)")
    p.add_argument("--weights", choices=("fp16", "int8"), default="fp16",
                   help="stored weight format: fp16 (default) or int8 weight-only, per output channel (about 40 %% "
                   "smaller again; the card is measured on the compressed model)")
    p.add_argument("--ood", default=None, metavar="METHOD",
                   help="refit every member's OOD detector with METHOD, e.g. knn-tiny (a 300-image int8 bank per "
                   "member of an ensemble under a size budget); default: int8 releases refit the stored method")
    p.set_defaults(func=cmd_release)


def cmd_card(args: argparse.Namespace) -> int:
    from lesionlab.released.card import card_markdown, load_card, run_card, run_card_markdown

    folder = Path(resolve_model_ref(args.model))  # an unknown name lists the built-in ones
    card = load_card(folder)
    render = card_markdown
    if card is None:  # a run or ensemble: what its metrics.json says, marked as not a released model
        card, render = run_card(folder), run_card_markdown
    if card is None:
        raise FileNotFoundError(f"{folder} has no card.json (not a released model) and no metrics.json (not scored "
                                "on its test split): nothing to put on a card. Score it first (an ensemble: "
                                "`lesionlab ensemble ... --test`), or package it with `lesionlab release`")
    text = json.dumps(card, indent=2) + "\n" if args.json else render(card)
    if args.output:
        Path(args.output).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


@checks_model()
def cmd_release(args: argparse.Namespace) -> int:
    from lesionlab.engine.release import package_release
    from lesionlab.released.card import card_markdown

    card = package_release(args.run, args.out, name=args.name, data_root=Path(args.data_root).resolve(),
                           external=args.external, command=args.command, n_boot=args.bootstrap,
                           weights=args.weights, ood=args.ood)
    sys.stdout.write(card_markdown(card))
    return 0
