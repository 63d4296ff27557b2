"""``lesionlab attention-maps``: soft-attention heat-maps of a run's predictions on images."""

from __future__ import annotations

import argparse

from lesionlab.commands.common import add_out, checks_model


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "attention-maps", help="save soft-attention heat-maps for a run's predictions on images",
        description="For a run trained with model.attention=soft: predict each image and save its summed "
        "attention map as a PNG overlay (<out>/<image>_attention.png) plus predictions.json.",
        epilog="example:\n  lesionlab attention-maps runs/attention-... lesion.jpg other.jpg --out heatmaps/")
    p.add_argument("run", help="run directory or model.pt (trained with model.attention=soft)")
    p.add_argument("images", nargs="+", help="image files")
    add_out(p, "output folder for the PNG heat-maps", required=True)
    p.set_defaults(func=cmd_attention_maps)


@checks_model()
def cmd_attention_maps(args: argparse.Namespace) -> int:
    from pathlib import Path

    from lesionlab.models.attention_maps import save_attention_maps

    written = save_attention_maps(args.run, [Path(p) for p in args.images], Path(args.out))
    for item in written:
        print(f"{item['image']}: {item['label']} ({item['probability']:.3f}) -> {item['heatmap']}")
    return 0
