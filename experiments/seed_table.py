"""Test-split figures of several training runs (seeds) of one recipe, with lesion-bootstrap 95 % intervals.

A run is a run directory or the ensemble folder of a refit job (``train.refit_ensemble``). Each is scored on its own
held-out test split: from its ``predictions.csv`` (written by ``lesionlab train``) or,
for a validation-only run (``eval.test=false``), by evaluating its model once on the test split (seen images
excluded). Writes a Markdown table: one row per seed and the median over seeds.

    python experiments/seed_table.py RUN [RUN ...] --data-root ../shared/data --out docs/results/default-seeds.md
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lesionlab.config import DataConfig, load_run_config
from lesionlab.evaluation.card_metrics import card_metrics

KEYS = ("balanced_accuracy", "auc_macro", "auc_mel", "accuracy", "priority1_sensitivity", "priority1_specificity")


def run_predictions(run: Path, data_root: str) -> pd.DataFrame:
    if (run / "predictions.csv").is_file():
        return pd.read_csv(run / "predictions.csv", dtype={"image_id": str})
    from lesionlab.engine.evaluate import evaluate_run

    cfg = load_run_config(run / "config.yaml")
    with tempfile.TemporaryDirectory() as tmp:
        evaluate_run(run, DataConfig(dataset=cfg.data.dataset, root=data_root), out_dir=tmp, exclude_seen=True,
                     progress=False)
        frame = pd.read_csv(Path(tmp) / "predictions.csv", dtype={"image_id": str})
    frame.to_csv(run / "predictions.csv", index=False)  # scored once; later tables reuse it
    return frame


def stored_model(run: Path) -> tuple[Path, dict | None]:
    """(a model.pt with the run's classes and split, the ensemble's thresholds or None for a single run).

    For the ensemble folder of a refit job (``train.refit_ensemble``) that is its last member, the refit, whose
    ``splits.csv`` holds every image the two members trained or validated on; its ``timings.json`` has both fits."""
    manifest = run / "ensemble.json"
    if not manifest.is_file():
        return run / "model.pt", None
    data = json.loads(manifest.read_text())
    return (run / data["members"][-1]).resolve(), dict(data.get("thresholds") or {})


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--data-root", default="../shared/data")
    ap.add_argument("--out", required=True)
    ap.add_argument("--title", default="New default: own test split, 3 seeds")
    ap.add_argument("--bootstrap", type=int, default=1000)
    args = ap.parse_args(argv)
    rows = []
    for run in map(Path, args.runs):
        preds = run_predictions(run, str(Path(args.data_root).resolve()))
        model_file, thresholds = stored_model(run)
        blob = torch.load(model_file, map_location="cpu", weights_only=False)
        names = list(blob["preprocessing"]["class_names"])
        splits = pd.read_csv(model_file.parent / "splits.csv", dtype=str)
        lesion_of = dict(zip(splits["image_id"], splits["lesion_id"], strict=True))
        summary = card_metrics(preds, names, blob["preprocessing"].get("thresholds") if thresholds is None
                               else thresholds, [lesion_of[i] for i in preds["image_id"]], n_boot=args.bootstrap,
                               positive="mel")
        cfg = load_run_config(run / "config.yaml")
        timings = json.loads((run / "timings.json").read_text())
        fit = timings["fit"] / 60
        sibling = Path(cfg.train.calibration_from or "") / "timings.json"
        if cfg.train.calibration_from and thresholds is None:  # a refit: its sibling's fit belongs to the same job
            fit = (f"{json.loads(sibling.read_text())['fit'] / 60 + fit:.1f}" if sibling.is_file()
                   else f"{fit:.1f}*")
        rows.append({"run": run.name, "seed": cfg.train.seed, "n": summary["n_images"],
                     "fit_min": fit if isinstance(fit, str) else f"{fit:.1f}",  # '*': the refit's fit alone
                     **{k: summary["figures"][k] for k in KEYS},
                     "per_class": {k.removeprefix("recall_"): v["value"] for k, v in summary["figures"].items()
                                   if k.startswith("recall_")}})
    fmt = lambda f: f"{f['value']:.3f} ({f['lo']:.3f}–{f['hi']:.3f})"  # noqa: E731
    lines = [f"# {args.title}", "", f"Lesion-bootstrap 95 % intervals ({args.bootstrap} resamples of test lesions). "
             "Priority 1 = MEL/BCC/SCC by the stored operating point (thresholds chosen on validation).", "",
             "| seed | test images | fit min | balanced accuracy | macro AUC | melanoma AUC | accuracy | "
             "P1 sensitivity | P1 specificity |", "|---:|---:|---:|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['seed']} | {r['n']} | {r['fit_min']} | " + " | ".join(fmt(r[k]) for k in KEYS) + " |")
    med = {k: float(np.median([r[k]["value"] for r in rows])) for k in KEYS}
    lines.append("| **median** | | | " + " | ".join(f"**{med[k]:.3f}**" for k in KEYS) + " |")
    classes = list(rows[0]["per_class"])
    lines += ["", "Recall per class (median over seeds): " + ", ".join(
        f"{c} {np.median([r['per_class'][c] for r in rows]):.2f}" for c in classes), ""]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
