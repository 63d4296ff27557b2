"""``lesionlab card``: a model's card as Markdown (built-in model, released folder, run or ensemble)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lesionlab.builtin.registry import BUILTIN_MODELS, resolve_model_ref
from lesionlab.commands.common import add_out


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("card", help="a model's card as Markdown (built-in model, released folder, run or ensemble)",
                       description="Print the model card: training data and licence, how it was built, test "
                       "figures with 95 % bootstrap intervals (own test split and external sets), calibration, the "
                       "triage operating point, intended use and limitations. MODEL defaults to the built-in model; "
                       f"built-in names: {', '.join(BUILTIN_MODELS)}. A run or ensemble folder gets a shorter card "
                       "computed from its metrics.json, marked as not a released model.",
                       epilog="examples:\n  lesionlab card\n  lesionlab card runs/default-... --json --out card.json")
    p.add_argument("model", nargs="?", default=None, help="built-in name (or 'builtin'), a released model folder, "
                   "or a run or ensemble folder")
    p.add_argument("--json", action="store_true", help="print card.json instead of Markdown")
    add_out(p, "write to this file instead of stdout")
    p.set_defaults(func=cmd_card)


def cmd_card(args: argparse.Namespace) -> int:
    from lesionlab.builtin.card import card_markdown, load_card, run_card, run_card_markdown

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
    if args.out:
        Path(args.out).write_text(text)
    else:
        sys.stdout.write(text)
    return 0
