"""``lesionlab release``: package a trained run as a released model folder with its card."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lesionlab.commands.common import add_data_root, add_out, checks_model


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("release", help="package a trained run as a released model folder with its card",
                       description="Copy a run's weights in half precision (or int8), export ONNX, store the images "
                       "it saw, and evaluate the packaged model once on its held-out test split and on each --external "
                       "dataset (seen images excluded) to write card.json.",
                       epilog="example:\n  lesionlab release runs/default-... --name ham-small "
                       "--out released/ham-small "
                       "--data-root ../shared/data --external ph2 --command 'lesionlab train --config configs/"
                       "release.yaml'")
    p.add_argument("run", help="trained run directory")
    p.add_argument("--name", required=True, help="released model name")
    add_out(p, "output folder (e.g. src/lesionlab/builtin/models/NAME)", required=True)
    add_data_root(p, "data root holding the run's dataset and the external sets", required=True)
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


@checks_model()
def cmd_release(args: argparse.Namespace) -> int:
    from lesionlab.builtin.card import card_markdown
    from lesionlab.engine.release import package_release

    card = package_release(args.run, args.out, name=args.name, data_root=Path(args.data_root).resolve(),
                           external=args.external, command=args.command, n_boot=args.bootstrap,
                           weights=args.weights, ood=args.ood)
    sys.stdout.write(card_markdown(card))
    return 0
