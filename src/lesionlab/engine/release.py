"""Build a released model folder from a trained run: half-precision weights, ONNX export, seen-image list and a
model card whose figures come from evaluating the packaged model itself (own test split + external sets)."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from lesionlab.config import DataConfig, load_run_config
from lesionlab.data.info import DATASET_INFO
from lesionlab.evaluation.card_metrics import card_metrics
from lesionlab.models.compression import WEIGHT_FORMATS, compress_state

INTENDED_USE = (
    "Decision support for trained clinicians triaging dermatoscopic images of pigmented skin lesions: a ranked "
    "differential (top-3 of the HAM10000 classes), calibrated probabilities and a triage priority (1 = possibly "
    "malignant: refer). Research and education; non-commercial use only (the training data are CC BY-NC 4.0).")
LIMITATIONS = (
    "Dermatoscopic images only: clinical (smartphone) photos, histology or non-skin images are out of scope.",
    "Trained on the HAM10000 population (Vienna and Queensland, mostly fair-skinned adults); performance on other "
    "skin types, devices and clinics is lower (see the external PH2 figures).",
    "Seven classes: lesions outside them (e.g. SCC separately, amelanotic melanoma subtypes, rare tumours) are "
    "forced into one of them.",
    "Decision support, not a diagnosis: it has not been evaluated prospectively or approved as a medical device.",
    "Small classes (df, vasc, akiec) have wide confidence intervals.",
)


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError, StopIteration):
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    return f"{os.cpu_count()} cores, {cpu}"


def _compressed_copy(model_file: Path, target: Path, weights: str, extra: dict[str, Any]) -> None:
    blob = torch.load(model_file, map_location="cpu", weights_only=False)
    blob["state_dict"] = compress_state(blob["state_dict"], weights)
    blob["extra"] = {**blob.get("extra", {}), **extra, "weights_format": weights}
    torch.save(blob, target)


def _latency_ms(model_dir: Path, repeats: int = 20) -> float:
    """Median wall time of one ``Predictor.predict`` call on one image (batch 1, the stored TTA)."""
    import numpy as np
    from PIL import Image

    from lesionlab.serving.predictor import Predictor

    predictor = Predictor.load(model_dir)
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (450, 600, 3), dtype=np.uint8))
    predictor.predict([img])
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        predictor.predict([img])
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1000)


def evaluate_for_card(model_dir: Path, dataset: str, data_root: str | Path, thresholds: dict[str, float],
                      lesion_of: dict[str, str], n_boot: int, positive: str | None = None,
                      max_samples: int | None = None) -> dict:
    """Evaluate the packaged model on ``dataset`` (seen images excluded) and summarise it with CIs."""
    from lesionlab.engine.evaluate import evaluate_run

    with tempfile.TemporaryDirectory() as tmp:
        result = evaluate_run(model_dir, DataConfig(dataset=dataset, root=str(data_root), max_samples=max_samples),
                              out_dir=tmp,
                              exclude_seen=True, progress=False)
        preds = pd.read_csv(Path(tmp) / "predictions.csv", dtype={"image_id": str})
        calibration = json.loads((Path(tmp) / "metrics.json").read_text()).get("ece")
    names = [c.removeprefix("p_") for c in preds.columns if c.startswith("p_")]
    lesions = [lesion_of.get(i, i) for i in preds["image_id"]]  # one image per lesion where the id is unknown
    summary = card_metrics(preds, names, thresholds, lesions, n_boot=n_boot, positive=positive)
    summary.update({"dataset": dataset, "excluded_seen_images": result.excluded, "ece": calibration})
    return summary


def package_release(run_dir: str | Path, out_dir: str | Path, *, name: str, data_root: str | Path,
                    external: Sequence[str] = (), command: str = "", n_boot: int = 1000,
                    max_samples: int | None = None, weights: str = "fp16") -> dict:
    """Write ``out_dir`` (model.pt, model.onnx, splits.csv, config.yaml, card.json) from ``run_dir``.

    ``weights`` is the stored weight format (:data:`lesionlab.models.compression.WEIGHT_FORMATS`: ``fp16`` or
    ``int8``); the card's figures come from the packaged, compressed model. ``max_samples`` limits the evaluation
    sets (tests only: a card's figures use every image)."""
    from lesionlab.serving.export import export_run

    WEIGHT_FORMATS.get(weights)  # an unknown format fails before anything is written
    run_dir, out = Path(run_dir), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = load_run_config(run_dir / "config.yaml")
    shutil.copy(run_dir / "config.yaml", out / "config.yaml")
    splits = pd.read_csv(run_dir / "splits.csv", dtype={"image_id": str, "lesion_id": str})
    splits[["image_id", "lesion_id", "split"]].to_csv(out / "splits.csv", index=False)
    _compressed_copy(run_dir / "model.pt", out / "model.pt", weights, {"released_as": name})
    export_run(out, out / "model.onnx")
    blob = torch.load(out / "model.pt", map_location="cpu", weights_only=False)
    prep, extra = blob["preprocessing"], blob.get("extra", {})
    thresholds = dict(prep.get("thresholds") or {})
    lesion_of = dict(zip(splits["image_id"], splits["lesion_id"], strict=True))
    timings = json.loads((run_dir / "timings.json").read_text()) if (run_dir / "timings.json").is_file() else {}
    own = evaluate_for_card(out, cfg.data.dataset, data_root, thresholds, lesion_of, n_boot, positive="mel",
                            max_samples=max_samples or cfg.data.max_samples)
    evaluations = {f"{cfg.data.dataset}-test": own}
    for dataset in external:
        evaluations[dataset] = evaluate_for_card(out, dataset, data_root, thresholds, lesion_of, n_boot,
                                                 positive="mel", max_samples=max_samples)
    info = DATASET_INFO.get(cfg.data.dataset) if cfg.data.dataset in DATASET_INFO else None
    counts = splits["split"].value_counts().to_dict()
    card = {
        "name": name,
        "architecture": {"backbone": cfg.model.backbone, "pretrained": str(cfg.model.pretrained),
                         "head": cfg.model.head, "colour_constancy": cfg.model.colour_constancy,
                         "input": {"image_size": prep["image_size"], "crop": prep["crop"], "tta": prep["tta"]},
                         "classes": list(prep["class_names"]), "taxonomy": prep["taxonomy"],
                         "weights_format": weights},
        "training": {"dataset": cfg.data.dataset, "licence": info.licence if info else None,
                     "citation": info.citation if info else None,
                     "images": {k: int(v) for k, v in counts.items()},
                     "trained_on": "the training split" + (" + validation split" if extra.get("train_on_val") else ""),
                     "calibrated_on": ("the validation split, by the train-only sibling run of the same recipe "
                                       "(temperature, triage thresholds, unsure threshold)" if extra.get("train_on_val")
                                       else "the validation split (temperature, triage thresholds, unsure threshold)"),
                     "held_out": "the test split: lesion-disjoint, never used to train, choose or calibrate",
                     "epochs": cfg.train.epochs, "best_epoch": extra.get("best_epoch"),
                     "command": command, "fit_minutes": round(timings.get("fit", float("nan")) / 60, 1),
                     "machine": _machine(), "seed": cfg.train.seed},
        "calibration": {"temperature": prep.get("temperature"), "unsure_threshold": prep.get("unsure_threshold")},
        "triage_operating_point": {
            "rule": f"priority-1 class thresholds chosen on validation for sensitivity >= "
                    f"{cfg.eval.triage_sensitivity}", "thresholds": thresholds},
        "evaluations": evaluations,
        "latency_ms_batch1": round(_latency_ms(out), 1),
        "files_mb": {p.name: round(p.stat().st_size / 2**20, 2) for p in sorted(out.iterdir()) if p.is_file()},
        "intended_use": INTENDED_USE,
        "limitations": list(LIMITATIONS),
        "licence_note": "Model weights derived from CC BY-NC 4.0 data: non-commercial use only.",
    }
    (out / "card.json").write_text(json.dumps(card, indent=2, default=float))
    return card


__all__ = ["INTENDED_USE", "LIMITATIONS", "evaluate_for_card", "package_release"]
