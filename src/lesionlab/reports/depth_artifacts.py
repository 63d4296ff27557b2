"""The evaluation-depth artifacts of a run's test split: calibration, operating points, the triage rule, Grad-CAM.

They report on test images with what was fitted on validation (:mod:`lesionlab.engine.core.validation`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from torch import nn

from lesionlab.config import ExperimentConfig
from lesionlab.data.info import DATASET_INFO
from lesionlab.data.prepare import PreparedData
from lesionlab.data.roots import resolve_data_root
from lesionlab.evaluation.explain import (
    balanced_sample,
    cam_in_lesion_by_class,
    explain_images,
    find_mask_dir,
    load_mask_files,
    load_masks,
    overlay,
)
from lesionlab.evaluation.operating_points import operating_point_table, rule_summary
from lesionlab.inference.calibration import before_after, calibration_summary, probs_from_view_logits
from lesionlab.models.checkpoint import Preprocessing
from lesionlab.reports.artifacts import json_safe
from lesionlab.reports.diagnostic_plots import plot_gallery, plot_reliability

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ValidationOutputs:
    """Per-view validation logits ``(V, N, C)`` and labels, kept to report the operating points' val side."""

    view_logits: np.ndarray
    targets: np.ndarray


def default_mask_dir(cfg: ExperimentConfig) -> Path | None:
    """``eval.mask_dir``, else a mask folder beside the dataset's images (HAM10000: ``masks_200x150``)."""
    if cfg.eval.mask_dir:
        return Path(cfg.eval.mask_dir).expanduser()
    name = cfg.data.dataset
    if name not in DATASET_INFO:
        return None
    return find_mask_dir(resolve_data_root(cfg.data.root) / DATASET_INFO.get(name).folder)


def write_calibration(directory: Path, y: np.ndarray, view_logits: np.ndarray, temperature: float, n_bins: int,
                      note: str) -> dict:
    """``calibration.json`` (ECE, Brier, NLL before/after T on these data) and ``figures/reliability.png``."""
    summary = {**before_after(y, view_logits, temperature, n_bins), "bins": n_bins, "note": note}
    (directory / "calibration.json").write_text(json.dumps(json_safe(summary), indent=2))
    curves = {"before (T = 1)": probs_from_view_logits(view_logits, 1.0)}
    if temperature != 1.0:
        curves[f"after (T = {temperature:.2f})"] = probs_from_view_logits(view_logits, temperature)
    plot_reliability(y, curves, directory / "figures" / "reliability.png", n_bins)
    return summary


def write_shipped_calibration(directory: Path, y: np.ndarray, probs: np.ndarray, temperature: float,
                              n_bins: int = 15) -> dict:
    """Calibration of the probabilities a saved model gives on new data (its stored temperature, not refitted)."""
    summary = {"temperature": float(temperature), "after": calibration_summary(y, probs, n_bins), "bins": n_bins,
               "note": "the model's stored temperature (fitted on its own validation split), measured on these data"}
    (directory / "calibration.json").write_text(json.dumps(json_safe(summary), indent=2))
    plot_reliability(y, {f"model (T = {temperature:.2f})": probs}, directory / "figures" / "reliability.png", n_bins)
    return summary


def write_operating_points(directory: Path, y_val: np.ndarray, p_val: np.ndarray, y_test: np.ndarray,
                           p_test: np.ndarray, prep: Preprocessing, cfg: ExperimentConfig) -> pd.DataFrame:
    """``operating_points.csv`` (thresholds on val, rates on test) and ``triage_rule.json``."""
    table = operating_point_table(y_val, p_val, y_test, p_test, prep.class_names, cfg.eval.specificities,
                                  cfg.eval.sensitivities)
    table.to_csv(directory / "operating_points.csv", index=False)
    rule = rule_summary(y_test, p_test, prep.class_names, prep.thresholds)
    rule["sensitivity_target"] = cfg.eval.triage_sensitivity
    val_rule = rule_summary(y_val, p_val, prep.class_names, prep.thresholds)["most_severe"]
    rule["validation"] = {k: val_rule[k] for k in ("priority1_sensitivity", "priority1_specificity")}
    (directory / "triage_rule.json").write_text(json.dumps(json_safe(rule), indent=2))
    return table


def write_gradcam(directory: Path, model: nn.Module, data: PreparedData, test: np.ndarray, probs: np.ndarray,
                  prep: Preprocessing, cfg: ExperimentConfig, per_class: int = 2) -> pd.DataFrame | None:
    """Grad-CAM of a class-balanced sample of test images: ``cam_in_lesion.csv`` (per class), ``gradcam.csv``
    (per image) and ``figures/gradcam_gallery.png`` (correct and wrong predictions per class)."""
    y = data.targets()[test]
    pick = balanced_sample(y, cfg.eval.gradcam_images, seed=cfg.train.seed)
    if len(pick) == 0:
        return None
    table = data.table.iloc[test[pick]]
    images = np.asarray(data.images[data.rows[test[pick]]])
    mask_dir = default_mask_dir(cfg)
    masks = None
    if "mask_path" in table and not cfg.eval.mask_dir:  # the dataset names each image's mask (PH2)
        masks, _ = load_mask_files(table["mask_path"].tolist(), prep.crop, prep.image_size)
        mask_dir = Path(str(table["mask_path"].dropna().iloc[0])).parent if table["mask_path"].notna().any() else None
    elif mask_dir is not None and mask_dir.is_dir():
        masks, _ = load_masks(table["image_id"].astype(str).tolist(), mask_dir, prep.crop, prep.image_size)
    ex = explain_images(model, images, prep.mean, prep.std, table["image_id"].astype(str).tolist(), y[pick],
                        probs[pick], prep.class_names, method=cfg.eval.gradcam_method, masks=masks)
    ex.frame.to_csv(directory / "gradcam.csv", index=False)
    by_class = cam_in_lesion_by_class(ex.frame, prep.class_names)
    by_class.to_csv(directory / "cam_in_lesion.csv")
    rows, labels = [], []
    for name in prep.class_names:
        f = ex.frame.reset_index(drop=True)
        correct = f.index[(f["truth"] == name) & f["correct"]].tolist()[:per_class]
        wrong = f.index[(f["truth"] == name) & ~f["correct"]].tolist()[:per_class]
        if correct or wrong:
            rows.append(correct + wrong)
            labels.append(f"{name}: {len(correct)} right, {len(wrong)} wrong")
    captions = [f"{'✓' if r.correct else '✗'} {r.truth}→{r.prediction} {r.probability:.2f}"
                + ("" if np.isnan(r.cam_in_lesion) else f"\nin-lesion {r.cam_in_lesion:.2f}")
                for r in ex.frame.itertuples()]
    overlays = np.stack([overlay(im, cam) for im, cam in zip(ex.images, ex.cams, strict=True)])
    plot_gallery(ex.images, overlays, ex.masks, captions, rows, labels, directory / "figures" / "gradcam_gallery.png")
    (directory / "gradcam.json").write_text(json.dumps({"method": ex.method, "images": len(pick),
                                                        "masks": str(mask_dir) if masks is not None else None}))
    return by_class


def write_depth_artifacts(directory: Path, model: nn.Module, data: PreparedData, test: np.ndarray,
                          test_logits: np.ndarray, prep: Preprocessing, cfg: ExperimentConfig,
                          val: ValidationOutputs | None) -> None:
    """Everything the report's evaluation-depth sections read, computed on the held-out test split."""
    y_test = data.targets()[test]
    if cfg.train.calibration_from:  # a refit ships its train-only sibling's temperature
        note = (f"temperature {prep.temperature:.3f} fitted on the validation split by the train-only sibling run "
                f"{cfg.train.calibration_from}; ECE/Brier/NLL measured on the held-out test split")
    elif val is not None and cfg.eval.calibrate:
        note = "temperature fitted on the validation split; ECE/Brier/NLL measured on the held-out test split"
    else:
        note = "no temperature scaling (eval.calibrate=false or no validation split)"
    write_calibration(directory, y_test, test_logits, prep.temperature, cfg.eval.ece_bins, note)
    p_test = probs_from_view_logits(test_logits, prep.temperature)
    if val is not None:
        p_val = probs_from_view_logits(val.view_logits, prep.temperature)
        write_operating_points(directory, val.targets, p_val, y_test, p_test, prep, cfg)
    if cfg.eval.gradcam_images > 0:
        write_gradcam(directory, model, data, test, p_test, prep, cfg)
