"""The steps every training job shares after its data is prepared: record the split, finalize the model on the
validation split, evaluate it once on the test split.

:func:`lesionlab.engine.train.train` and :func:`lesionlab.engine.distill.distill` are both this sequence around their
own fit: ``write_run_data`` → fit → ``finalize`` (best weights, temperature and triage thresholds, the unsure
threshold, the OOD detector, ``model.pt``) → ``evaluate_test`` (metrics with CIs, the evaluation-depth artifacts).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from lesionlab.config import ExperimentConfig, ModelConfig
from lesionlab.data.prepare import PreparedData
from lesionlab.data.source_check import check_if_merged
from lesionlab.data.splits import check_test_unseen, split_summary
from lesionlab.engine.core.ood_detector import fit_run_detector, write_ood_summary
from lesionlab.engine.core.sibling_calibration import calibrated_like
from lesionlab.engine.core.validation import tune_on_validation
from lesionlab.evaluation.populations import figures_by_source
from lesionlab.inference.calibration import probs_from_view_logits
from lesionlab.inference.predict import predict_view_logits
from lesionlab.models.checkpoint import Preprocessing, save_model
from lesionlab.reports.artifacts import write_evaluation
from lesionlab.reports.depth_artifacts import write_depth_artifacts
from lesionlab.runs import RunPaths
from lesionlab.training.trainer_factory import best_epoch as history_best_epoch

logger = logging.getLogger(__name__)


def write_run_data(run: RunPaths, data: PreparedData) -> tuple[pd.DataFrame, dict[str, Any]]:
    """``splits.csv`` (what the seen-data guard reads), skipped images and ``data_summary.json``; returns the
    per-split class counts and the summary."""
    table, classes = data.table, data.dataset.class_names
    patients = ["patient_id"] if table["patient_id"].notna().any() else []  # the seen-data guard compares them too
    table[["image_id", "lesion_id", *patients, "label", "split", *(["fold"] if "fold" in table else [])]].to_csv(
        run.splits, index=False)
    if len(data.skipped):
        data.skipped.to_csv(run.skipped, index=False)
    counts = split_summary(table, table["split"], classes)
    source_check = check_if_merged(data)  # several populations: can a quick classifier tell them apart?
    summary = {**data.dataset.summary(), "split_counts": counts.to_dict(), "skipped_images": len(data.skipped),
               "cache": str(data.arrays.directory), "cache_built": data.arrays.built,
               "cache_seconds": data.arrays.seconds,
               **({"source_check": source_check.to_dict()} if source_check else {})}
    run.data_summary.write_text(json.dumps(summary, indent=2, default=str))
    return counts, summary


@dataclass(frozen=True)
class Finalized:
    """The shipped model and what was fitted for it on the validation split."""

    model: nn.Module
    prep: Preprocessing
    best_epoch: int
    val_outputs: Any  # validation view logits etc. for the evaluation-depth artifacts


def finalize(module: Any, best_path: str | None, run: RunPaths, cfg: ExperimentConfig, data: PreparedData,
             mean: tuple[float, ...], std: tuple[float, ...], *, metadata: np.ndarray | None = None,
             model_cfg: ModelConfig | None = None, extra: Mapping[str, Any] | None = None,
             calibration: Preprocessing | None = None) -> Finalized:
    """Best weights → temperature and thresholds → unsure threshold → OOD detector (all on validation or training
    data, never test) → ``model.pt``.

    ``calibration``: a refit on training + validation lesions ships its train-only sibling's temperature and
    thresholds (:mod:`lesionlab.engine.core.sibling_calibration`) and its last epoch's weights."""
    if best_path:
        module.load_state_dict(torch.load(best_path, map_location="cpu", weights_only=False)["state_dict"])
    classes = data.dataset.class_names
    prep = Preprocessing(image_size=cfg.data.image_size, crop=cfg.data.crop, mean=mean, std=std,
                         class_names=tuple(classes), taxonomy=data.dataset.taxonomy.name, tta=cfg.eval.tta,
                         canonical=cfg.data.canonical)
    history = pd.read_csv(run.history)
    best_epoch = history_best_epoch(history, cfg.train.monitor) if calibration is None else len(history)
    model = module.inference_model().cpu()
    if calibration is None:
        prep, val_outputs = tune_on_validation(model, data, prep, cfg, metadata=metadata)
        write_validation_by_source(run.root, data, prep, val_outputs)
    else:
        prep, val_outputs = calibrated_like(prep, calibration), None
    detector = fit_run_detector(model, data, prep, cfg.eval.ood, cfg.eval.ood_coverage, metadata,
                                cfg.eval.batch_size)  # training features, threshold on validation
    model.ood_detector = detector
    save_model(run.model, model, model_cfg or cfg.model, prep,
               extra={"best_epoch": best_epoch, "dataset": data.dataset.name,
                      "train_images": len(data.indices("train")), **(extra or {}),
                      **({"train_on_val": True, "calibrated_by": cfg.train.calibration_from} if calibration else {})},
               ood=detector.to_dict() if detector is not None else None)
    return Finalized(model, prep, best_epoch, val_outputs)


def write_validation_by_source(directory: Path, data: PreparedData, prep: Preprocessing, val_outputs: Any) -> None:
    """``val_by_source.json``: each population's validation figures and the worst of them (several sources only)."""
    if val_outputs is None:
        return
    val = data.indices("val")
    probs = probs_from_view_logits(val_outputs.view_logits, prep.temperature)
    figures = figures_by_source(data.table.iloc[val], val_outputs.targets, probs, prep.class_names,
                                thresholds=prep.thresholds)
    if figures is not None:
        (Path(directory) / "val_by_source.json").write_text(json.dumps(figures, indent=2, default=float))
        logger.info("Validation by source: %s", {k: round(v["balanced_accuracy"], 3) for k, v in figures.items()})


def evaluate_test(run: RunPaths, final: Finalized, data: PreparedData, cfg: ExperimentConfig, *,
                  metadata: np.ndarray | None = None) -> dict:
    """The one look at the test split: what the saved model predicts (TTA, temperature), metrics with lesion-level
    CIs, calibration, operating points, Grad-CAM and the OOD share. Refuses test images seen in training."""
    test = data.indices("test")
    check_test_unseen(data.table, test)  # raises LeakageError (an assert would vanish under `python -O`)
    prep = final.prep
    logits = predict_view_logits(final.model, data.images, prep.mean, prep.std, indices=data.rows[test],
                                 batch_size=cfg.eval.batch_size, tta=cfg.eval.tta,
                                 metadata=None if metadata is None else metadata[test])
    probs = probs_from_view_logits(logits, prep.temperature)  # what the saved model (and `evaluate`) gives
    metrics = write_evaluation(run.root, data.table.iloc[test], data.targets()[test], probs,
                               data.dataset.class_names, cfg.eval.topk, thresholds=prep.thresholds,
                               sensitivity_target=cfg.eval.triage_sensitivity)
    write_depth_artifacts(run.root, final.model, data, test, logits, prep, cfg, final.val_outputs)
    write_ood_summary(run.root, final.model, data, prep, metadata)  # share of test lesions the detector flags
    return metrics
