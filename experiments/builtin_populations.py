"""Issue 25, "must show": a model on the three populations the issue names, each figure with a lesion-bootstrap CI.

Sets (each scored once per model; seen images refused, as ``evaluate`` refuses them):

- ``ham10000-test``: HAM10000's held-out test split (the fixed split every built-in shares);
- ``isic-archive-test``: the test split of isic-archive under ``configs/two-populations.yaml`` (each source split on
  its own, near-duplicates grouped, images close to HAM10000/PH2 dropped): 336 images;
- ``ph2``: the external clinic (200 images), which chose nothing.

The figures are those of a model card (``lesionlab.evaluation.card_metrics``: balanced accuracy, macro AUC, melanoma
AUC, priority-1 sensitivity/specificity at the model's stored operating point, 1,000 lesion-bootstrap resamples),
with the model's own test-time views and canonical chain:

    python experiments/builtin_populations.py --model builtin --sets isic-archive-test ph2 \
        --out docs/results/builtin-populations-ham7-lite2.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd

from lesionlab.builtin.registry import resolve_model_ref
from lesionlab.config import DataConfig, load_config
from lesionlab.data.prepare import prepare_data
from lesionlab.engine.evaluate import evaluate_run
from lesionlab.engine.release import evaluate_for_card
from lesionlab.evaluation.card_metrics import card_metrics
from lesionlab.serving.predictor import Predictor

SETS = ("ham10000-test", "isic-archive-test", "ph2")


def isic_archive_test(data_root: Path) -> pd.DataFrame:
    """The isic-archive test split of configs/two-populations.yaml: image_id, lesion_id, label (ham7)."""
    cfg = load_config("configs/two-populations.yaml")
    data = prepare_data(replace(cfg.data, root=str(data_root), image_size=32), progress=False)
    t = data.table
    return t[(t["split"] == "test") & (t["source"] == "isic-archive")][["image_id", "lesion_id", "label"]]


def score(model: str, name: str, data_root: Path, thresholds: dict[str, float], n_boot: int) -> dict:
    folder = Path(resolve_model_ref(model))
    if name != "isic-archive-test":
        dataset = name.removesuffix("-test")
        seen = pd.read_csv(folder / "splits.csv", dtype={"image_id": str, "lesion_id": str})
        return evaluate_for_card(folder, dataset, data_root, thresholds,
                                 dict(zip(seen["image_id"], seen["lesion_id"], strict=True)), n_boot, positive="mel")
    test = isic_archive_test(data_root)
    with tempfile.TemporaryDirectory() as tmp:
        table = Path(tmp) / "isic_archive_test.csv"
        test.to_csv(table, index=False)
        evaluate_run(folder, DataConfig(dataset="csv", root=str(data_root), csv=str(table),
                                        image_dir=str(data_root / "isic_archive" / "images_256")),
                     out_dir=Path(tmp) / "eval", progress=True)  # a seen image is refused, not dropped
        preds = pd.read_csv(Path(tmp) / "eval" / "predictions.csv", dtype={"image_id": str})
    names = [c.removeprefix("p_") for c in preds.columns if c.startswith("p_")]
    lesion_of = dict(zip(test["image_id"], test["lesion_id"], strict=True))
    summary = card_metrics(preds, names, thresholds, [lesion_of[i] for i in preds["image_id"]], n_boot=n_boot,
                           positive="mel")
    return {**summary, "dataset": "isic-archive (test split of configs/two-populations.yaml)"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="a released model folder or a built-in name")
    ap.add_argument("--sets", nargs="+", choices=SETS, default=list(SETS))
    ap.add_argument("--data-root", type=Path, default=Path("../shared/data"))
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--out", type=Path, required=True, help="JSON to write (one entry per set, written as it comes)")
    args = ap.parse_args(argv)
    thresholds = dict(Predictor.load(resolve_model_ref(args.model)).prep.thresholds or {})
    results = json.loads(args.out.read_text()) if args.out.is_file() else {}
    for name in args.sets:
        if name in results:
            print(f"{name}: already in {args.out}")
            continue
        start = time.perf_counter()
        results[name] = {**score(args.model, name, args.data_root, thresholds, args.n_boot),
                         "minutes": round((time.perf_counter() - start) / 60, 1)}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"model": args.model, **results}, indent=2, default=float))
        figs = results[name]["figures"]
        print(name, {k: round(figs[k]["value"], 3) for k in ("balanced_accuracy", "auc_macro", "auc_mel",
                                                            "priority1_sensitivity", "priority1_specificity")
                     if k in figs}, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
