"""``lesionlab export``: a trained run as ONNX (dynamic batch) with its preprocessing JSON."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lesionlab.commands.common import add_out, checks_model
from lesionlab.config import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export", help="export a trained run to ONNX (dynamic batch) + its preprocessing JSON",
        description="Write MODEL.onnx (normalised float32 NCHW in, logits out, dynamic batch axis) and "
        "MODEL.preprocessing.json (size, crop, mean/std, classes, temperature, TTA, thresholds, training-data "
        "licence, test metrics) and check ONNX Runtime against PyTorch. 'lesionlab serve' and 'predict' use ONNX "
        "Runtime automatically for .onnx files.",
        epilog="example:\n  lesionlab export runs/default-... --out model.onnx")
    p.add_argument("run", help="run directory or model.pt")
    p.add_argument("--format", choices=("onnx",), default="onnx", help="export format (onnx)")
    add_out(p, "output file (default: RUN/model.onnx)")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default 18)")
    p.set_defaults(func=cmd_export)


@checks_model()
def cmd_export(args: argparse.Namespace) -> int:
    from lesionlab.serving.export import export_run

    if args.opset is not None and not 7 <= args.opset <= 30:
        raise ConfigError(f"--opset must lie between 7 and 30, got {args.opset}")
    summary = export_run(Path(args.run), args.out, opset=args.opset)
    print(json.dumps(summary, indent=2))
    return 0
