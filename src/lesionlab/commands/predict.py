"""``lesionlab predict``: top-k diagnoses and the triage priority of images, with a run or the built-in model."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lesionlab.commands.common import add_out, collect_images, split_model_argument
from lesionlab.config import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="top-k diagnoses + triage priority for images",
                       description="Predict with a trained run, or with the built-in model when no model is given. "
                       "Prints the top-k diagnoses with probabilities and the triage priority (1 = malignant "
                       "MEL/BCC/SCC, 2 = AK/nevus, 3 = benign).",
                       epilog="examples:\n  lesionlab predict lesion.jpg            # the built-in model\n"
                       "  lesionlab predict runs/default-... lesion.jpg more_images/\n"
                       "  lesionlab predict --model model.onnx lesion.jpg --format json --out predictions.json")
    p.add_argument("images", nargs="+", metavar="IMAGE",
                   help="image files or folders, optionally preceded by a model (run directory, model.pt, .onnx, "
                   "ensemble manifest, or 'builtin' / a built-in name)")
    p.add_argument("--model", default=None, help="the model (default: the first argument when it is a model, "
                   "else the built-in model)")
    p.add_argument("--topk", type=int, default=3, help="how many diagnoses to list (default 3)")
    p.add_argument("--format", choices=("table", "json", "csv"), default="table", help="output format")
    add_out(p, "write to this file instead of stdout")
    p.add_argument("--quality", action="append", default=[], metavar="KEY=VALUE",
                   help="input quality gate setting (min_side, max_aspect, min_contrast, min_brightness, "
                   "max_brightness, max_clipped, min_sharpness, enabled=false); repeatable")
    p.set_defaults(func=cmd_predict)


def cmd_predict(args: argparse.Namespace) -> int:
    if args.topk < 1:
        raise ConfigError("--topk must be at least 1")
    model, images = split_model_argument(args.model, args.images)  # a given model that does not exist fails here
    paths, skipped = collect_images(images)  # so do missing images: both before the model loads
    if not paths:
        raise ConfigError("no images found in the given paths" + (
            f" (skipped {len(skipped)} files that are not images: {', '.join(map(str, skipped[:3]))})"
            if skipped else ""))
    from lesionlab.inference.quality import QualityConfig
    from lesionlab.serving.formatting import format_predictions
    from lesionlab.serving.predictor import ImageError, Predictor

    predictor = Predictor.load(model, quality=QualityConfig.from_overrides(args.quality))
    results, errors = predictor.predict_files(paths, topk=args.topk)
    errors += [ImageError(str(p), "not_an_image", f"{p}: skipped: not an image file (extension {p.suffix or 'none'})")
               for p in skipped]
    text = format_predictions(results, predictor.class_names, args.format, errors)
    if args.out:
        Path(args.out).write_text(text)
    else:
        sys.stdout.write(text)
    seen = [r.source for r in results if r.seen_in_training]
    if seen:
        listed = ", ".join(seen[:5]) + (", ..." if len(seen) > 5 else "")
        print(f"warning: {len(seen)} of {len(results)} images were used to train or validate this model (by image or "
              f"lesion id: {listed}); their predictions look better than the model does on new images", file=sys.stderr)
    for err in errors:
        print(f"error: {err}", file=sys.stderr)
    return 1 if errors else 0
