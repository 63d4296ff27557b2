"""Acquisition invariance: does a model give the same answer for the same lesion, whatever the file's acquisition?

Two checks, for each model given (a run folder, an ensemble folder, or a built-in name):

1. **Originals vs copies**: the 235 full-resolution HAM10000 originals (``ham10000/images_600x450``) against their
   200x150 copies (``images_200x150``): the share with the same top-1 diagnosis and the same triage priority.
2. **Variants of the HAM10000 test split** (the fixed lesion-disjoint split of ``configs/default.yaml``, a stratified
   subsample of ``--test-images``): each image re-encoded as JPEG at several qualities and down-scaled by several
   factors, against the unmodified file: top-1 and triage agreement per variant.

``--canonical NAME`` (repeatable) also scores each model with that canonical acquisition chain applied in predict
(:mod:`lesionlab.data.canonical`); ``default`` is the model's own stored choice. ``--engine fast`` predicts as the
server does (:class:`~lesionlab.serving.fastpath.FastPath`: ONNX Runtime when the model ships it; ``--tta cascade``
then scores the model's test-time cascade, the built-in model's served default).

    python benchmarks/acquisition_invariance.py --model builtin --model runs/x --data-root ../shared/data \
        --canonical default --canonical ham-200x150 --out docs/results/acquisition-invariance.csv

Prints one table (model, canonical, check, n, top-1 agreement, triage agreement) and writes it as CSV.
"""

from __future__ import annotations

import argparse
import io
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from tqdm.auto import tqdm

from lesionlab.config import DataConfig
from lesionlab.data.prepare import prepare_data, stratified_subsample
from lesionlab.inference.quality import NotAssessableError
from lesionlab.inference.triage import decide_triage
from lesionlab.serving.fastpath import FastPath
from lesionlab.serving.predictor import Predictor

JPEG_QUALITIES = (90, 70, 50, 30)
SCALES = (0.5, 0.33)


def jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


def downscale(image: Image.Image, factor: float) -> Image.Image:
    w, h = image.size
    return image.resize((max(8, round(w * factor)), max(8, round(h * factor))), Image.BICUBIC)


VARIANTS = {**{f"jpeg q{q}": (lambda im, q=q: jpeg(im, q)) for q in JPEG_QUALITIES},
            **{f"scale x{s}": (lambda im, s=s: downscale(im, s)) for s in SCALES}}


class Scorer:
    """Top-1 class and triage priority of PIL images under one model and one canonical chain."""

    def __init__(self, predictor: Predictor, canonical: str | None, fast: FastPath | None = None) -> None:
        self.predictor, self.fast = predictor, fast
        predictor.prep = replace(predictor.prep, canonical=canonical)  # the predictor applies it (None: no chain)

    def probs(self, batch: np.ndarray) -> np.ndarray:
        p = self.predictor
        return p.predict_arrays(batch) if self.fast is None else self.fast.predict(batch, p.prep.tta)[0]

    def __call__(self, images: list[Image.Image], desc: str) -> tuple[np.ndarray, np.ndarray]:
        p = self.predictor
        top, priority = [], []
        for start in tqdm(range(0, len(images), 32), desc=desc, unit="batch", leave=False):
            chunk = images[start:start + 32]
            arrays, ok = [], []
            for im in chunk:  # an image the quality gate refuses counts as a disagreement (class and priority -1)
                try:
                    arrays.append(p.preprocess(im))
                    ok.append(True)
                except NotAssessableError:
                    ok.append(False)
            probs = iter(self.probs(np.stack(arrays)) if arrays else [])
            for good in ok:
                q = next(probs) if good else None
                top.append(int(q.argmax()) if good else -1)
                priority.append(decide_triage(q, p.class_names, p.prep.thresholds).priority if good else -1)
        return np.array(top), np.array(priority)


def agreement(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> tuple[float, float]:
    return float((a[0] == b[0]).mean()), float((a[1] == b[1]).mean())


def load_rgb(path: str | Path) -> Image.Image:
    with Image.open(path) as im:
        return im.convert("RGB")


def record_in_cards(table: pd.DataFrame, argv: list[str] | None) -> None:
    """Write each released model's originals-vs-copies agreement (the first chain scored) into its card.json."""
    import json
    import sys

    from lesionlab.builtin.registry import resolve_model_ref

    rows = table[table["check"] == "600x450 original vs 200x150 copy"].drop_duplicates("model")
    for row in rows.itertuples():
        card_file = Path(resolve_model_ref(row.model)) / "card.json"
        if not card_file.is_file():
            print(f"{row.model}: no card.json, nothing recorded")
            continue
        card = json.loads(card_file.read_text())
        card["acquisition_invariance"] = {
            "check": "the 235 HAM10000 600x450 originals against their 200x150 copies",
            "n": int(row.n), "top1_agreement": round(row.top1_agreement, 4),
            "triage_agreement": round(row.triage_agreement, 4), "tta": row.tta, "canonical": row.canonical,
            "command": " ".join(["python benchmarks/acquisition_invariance.py",
                                 *(sys.argv[1:] if argv is None else argv)]),
            "date": time.strftime("%Y-%m-%d")}
        card_file.write_text(json.dumps(card, indent=2, default=float))
        print(f"recorded in {card_file}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", action="append", required=True, help="run/ensemble folder or built-in name (repeat)")
    ap.add_argument("--data-root", default="../shared/data")
    ap.add_argument("--canonical", action="append", default=None,
                    help="canonical acquisition in predict: default (the model's own), none, ham-200x150 (repeat)")
    ap.add_argument("--test-images", type=int, default=300, help="test-split images for the variants (0: skip)")
    ap.add_argument("--tta", default=None, help="override the models' test-time augmentation (e.g. none: 8x faster)")
    ap.add_argument("--engine", choices=("general", "fast"), default="general",
                    help="general: the predictor (lesionlab predict); fast: the server's path (ONNX Runtime; allows "
                    "--tta cascade)")
    ap.add_argument("--out", default=None, help="CSV to write")
    ap.add_argument("--card", action="store_true",
                    help="record the originals-vs-copies figure (under the first --canonical, default the model's own "
                         "chain) in each released model's card.json (`acquisition_invariance`)")
    args = ap.parse_args(argv)
    if args.tta == "cascade" and args.engine != "fast":
        ap.error("--tta cascade is the server's policy: add --engine fast")
    root = Path(args.data_root)
    index = pd.read_csv(root / "ham10000" / "images_600x450_index.csv")
    originals = [load_rgb(root / "ham10000" / "images_600x450" / f"{i}.jpg") for i in index["image_id"]]
    copies = [load_rgb(root / "ham10000" / "images_200x150" / f"{i}.jpg") for i in index["image_id"]]
    tests: list[Image.Image] = []
    if args.test_images:
        data = prepare_data(DataConfig(dataset="ham10000", root=str(root), image_size=32), progress=False)
        t = data.table[data.table["split"] == "test"].reset_index(drop=True)
        t = t[stratified_subsample(t, args.test_images, seed=0)]
        tests = [load_rgb(p) for p in t["path"]]
    rows = []
    for model in args.model:
        predictor = Predictor.load(model) if Path(model).exists() else Predictor.pretrained(model)
        if args.tta is not None:
            predictor.prep = replace(predictor.prep, tta=args.tta)
        stored = getattr(predictor.prep, "canonical", None)
        for canonical in args.canonical or ["default"]:
            chain = stored if canonical == "default" else (None if canonical == "none" else canonical)
            score = Scorer(predictor, chain, FastPath(predictor) if args.engine == "fast" else None)
            start = time.perf_counter()
            top1, triage = agreement(score(originals, "originals"), score(copies, "copies"))
            rows.append({"model": model, "tta": predictor.prep.tta, "canonical": chain or "none",
                         "check": "600x450 original vs 200x150 copy",
                         "n": len(originals), "top1_agreement": top1, "triage_agreement": triage})
            if tests:
                base = score(tests, "test split")
                for name, fn in VARIANTS.items():
                    top1, triage = agreement(base, score([fn(im) for im in tests], name))
                    rows.append({"model": model, "tta": predictor.prep.tta, "canonical": chain or "none",
                                 "check": f"test split, {name}",
                                 "n": len(tests), "top1_agreement": top1, "triage_agreement": triage})
            print(f"{model} [{chain or 'none'}]: {time.perf_counter() - start:.0f} s", flush=True)
    table = pd.DataFrame(rows)
    if args.card:
        record_in_cards(table, argv)
    with pd.option_context("display.width", 200, "display.max_colwidth", 60):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.out, index=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
