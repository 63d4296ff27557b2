"""``lesionlab cv``: k-fold cross-validation with a fixed held-out test split, saved as an ensemble.

The lesion-disjoint test split of ``data.split`` is held out once; the remaining lesions are dealt into ``k``
lesion-disjoint, class-stratified folds (:func:`lesionlab.data.splits.kfold_assignment`). Fold ``i`` trains a full
run (:func:`lesionlab.engine.train.train`) with fold ``i`` as its validation split, so each member's temperature
and its checkpoint choice only ever see its own validation fold. The folder becomes an ensemble artifact
(``ensemble.json``) that ``evaluate`` and ``predict`` accept like a single run. The ensemble's decision thresholds
are chosen on out-of-fold predictions (each non-test image scored by the member that validated on it).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from lesionlab.config import ConfigError, ExperimentConfig, save_config
from lesionlab.data.prepare import PreparedData, prepare_data
from lesionlab.data.roots import absolute_data_config
from lesionlab.evaluation.bootstrap import bootstrap_cis
from lesionlab.evaluation.metrics import classification_metrics
from lesionlab.evaluation.operating_point_fit import fit_operating_point
from lesionlab.inference.calibration import calibration_summary, probs_from_view_logits
from lesionlab.inference.predict import predict_probs, predict_view_logits
from lesionlab.models.checkpoint import load_model
from lesionlab.models.ensemble import combine_member_probs, write_manifest
from lesionlab.reports.artifacts import json_safe, write_evaluation
from lesionlab.reports.cv_report import cv_sections
from lesionlab.reports.depth_artifacts import write_gradcam, write_operating_points
from lesionlab.reports.run_report import write_evaluation_report
from lesionlab.runs import RunPaths, discards_unstarted_runs

logger = logging.getLogger(__name__)

WEIGHTINGS = ("equal", "val")
DEFAULT_FOLDS = 5


def wants_cv(cfg: ExperimentConfig) -> bool:
    """Whether ``cfg`` asks for a K-fold cross-validation ensemble: ``data.split.folds`` ≥ 2 on the lesion-disjoint
    split (no ``val_fold``, no ``split.column``).

    ``lesionlab train`` then trains the ensemble; components that train one model per cell (sweeps, ablations,
    studies) train the member recipe once on the fixed split."""
    split = cfg.data.split
    return split.folds >= 2 and split.val_fold is None and not split.column


@dataclass(frozen=True)
class CVResult:
    directory: Path
    folds: pd.DataFrame  # one row per (fold, tta) on the held-out test split
    summary: pd.DataFrame  # single fold mean/std, ensemble, ensemble + TTA
    seconds: float


@dataclass(frozen=True)
class _Member:
    run: RunPaths
    temperature: float
    test_plain: np.ndarray  # (1, N, C) logits without TTA
    test_tta: np.ndarray  # (V, N, C)
    val_positions: np.ndarray  # table positions of its validation fold
    val_tta: np.ndarray


def _scores(y: np.ndarray, before: np.ndarray, after: np.ndarray, classes: tuple[str, ...], topk, bins: int) -> dict:
    m = classification_metrics(y, after, classes, topk)
    row = {"balanced_accuracy": m["balanced_accuracy"], "auc_macro": m["auc_macro"], "accuracy": m["accuracy"]}
    row.update({k: v for k, v in m.items() if k.startswith("top") and k.endswith("_accuracy")})
    cal_b, cal_a = calibration_summary(y, before, bins), calibration_summary(y, after, bins)
    row.update({"ece_before": cal_b["ece"], "ece_after": cal_a["ece"], "ece_equal_mass_after": cal_a["ece_equal_mass"],
                "brier_before": cal_b["brier"], "brier_after": cal_a["brier"]})
    return row


def _cv_config(cfg: ExperimentConfig, folds: int) -> ExperimentConfig:
    if cfg.data.split.unit != "lesion" or cfg.data.split.column:
        raise ConfigError("cv needs the lesion-disjoint split (data.split.unit=lesion, no data.split.column)")
    if cfg.train.fit_on != "train":
        raise ConfigError("cv fits each fold's calibration on its held-out fold: train.fit_on must be train (a CV "
                          "ensemble already trains on every non-test lesion)")
    split = replace(cfg.data.split, folds=folds, val_fold=None)
    # the members already see every non-test lesion: no refit
    cfg = replace(cfg, train=replace(cfg.train, refit=False, refit_ensemble=False))
    return replace(cfg, data=replace(cfg.data, split=split))


def _train_member(cfg: ExperimentConfig, root: Path, k: int, data: PreparedData) -> _Member:
    from lesionlab.engine.train import train

    split = replace(cfg.data.split, val_fold=k)
    fold_cfg = replace(cfg, name=f"fold-{k}", output_dir=str(root), data=replace(cfg.data, split=split))
    (root / f"fold-{k}" / "figures").mkdir(parents=True)
    run = RunPaths(root / f"fold-{k}")
    logger.info("Cross-validation: training fold %d of %d", k + 1, cfg.data.split.folds)
    train(fold_cfg, run=run)
    recorded = pd.read_csv(run.splits, dtype={"image_id": str})
    test = data.indices("test")
    if set(recorded.loc[recorded["split"] == "test", "image_id"]) != set(data.table["image_id"].iloc[test]):
        raise AssertionError(f"fold {k} was tested on a different test split than the cross-validation holds out")
    model, prep = load_model(run.model)
    val = np.flatnonzero((data.table["split"] != "test").to_numpy() & (data.table["fold"] == k).to_numpy())
    common = {"batch_size": cfg.eval.batch_size}
    return _Member(run, prep.temperature,
                   predict_view_logits(model, data.images, prep.mean, prep.std, indices=data.rows[test], **common),
                   predict_view_logits(model, data.images, prep.mean, prep.std, indices=data.rows[test], tta=prep.tta,
                                       **common),
                   val, predict_view_logits(model, data.images, prep.mean, prep.std, indices=data.rows[val],
                                            tta=prep.tta, **common))


@discards_unstarted_runs
def run_cv(cfg: ExperimentConfig, folds: int | None = None, *, weighting: str = "equal") -> CVResult:
    """Train ``folds`` fold models, evaluate each and their ensemble (with and without TTA) on the test split.

    ``folds`` defaults to the config's ``data.split.folds`` (5 where that is 0)."""
    folds = folds or cfg.data.split.folds or DEFAULT_FOLDS
    if folds < 2:
        raise ConfigError(f"cross-validation needs at least 2 folds, got {folds}")
    if weighting not in WEIGHTINGS:
        raise ConfigError(f"--weights must be one of {WEIGHTINGS}, got {weighting!r}")
    t0 = time.perf_counter()
    cfg = _cv_config(cfg, folds)
    cfg = replace(cfg, data=absolute_data_config(cfg.data))
    root = RunPaths.create(cfg.output_dir, f"{cfg.name}-cv{folds}").root
    save_config(cfg, root / "config.yaml")
    data = prepare_data(cfg.data, progress=cfg.train.progress)
    table, classes = data.table, tuple(data.dataset.class_names)
    patients = ["patient_id"] if table["patient_id"].notna().any() else []
    table[["image_id", "lesion_id", *patients, "label", "split", "fold"]].to_csv(root / "splits.csv", index=False)
    members = [_train_member(cfg, root, k, data) for k in range(folds)]

    test = data.indices("test")
    y = data.targets()[test]
    bins, topk = cfg.eval.ece_bins, cfg.eval.topk
    temps = [m.temperature for m in members]
    oof = np.zeros((len(table), len(classes)))
    for m in members:
        oof[m.val_positions] = probs_from_view_logits(m.val_tta, m.temperature)
    pool = np.concatenate([m.val_positions for m in members])
    y_pool = data.targets()[pool]
    member_val_bal = [classification_metrics(data.targets()[m.val_positions], oof[m.val_positions], classes, ())
                      ["balanced_accuracy"] for m in members]
    weights = None if weighting == "equal" else member_val_bal

    rows = []
    for k, m in enumerate(members):
        for label, logits in (("none", m.test_plain), (cfg.eval.tta, m.test_tta)):
            rows.append({"fold": k, "tta": label, "val_balanced_accuracy": member_val_bal[k],
                         "temperature": m.temperature, **_scores(y, probs_from_view_logits(logits, 1.0),
                                                                  probs_from_view_logits(logits, m.temperature),
                                                                  classes, topk, bins)})
    fold_frame = pd.DataFrame(rows)
    ensembles = {}
    for label, key in (("ensemble", "test_plain"), (f"ensemble + TTA ({cfg.eval.tta})", "test_tta")):
        logits = [getattr(m, key) for m in members]
        ensembles[label] = (combine_member_probs(logits, None, weights), combine_member_probs(logits, temps, weights))
    summary = _summary(fold_frame, ensembles, y, classes, topk, bins, cfg.eval.tta)
    lesions = data.table["lesion_id"].astype(str).to_numpy()[test]
    for label, (_, after) in ensembles.items():  # lesion-level bootstrap 95 % CI of the ensembles' balanced accuracy
        low, high = bootstrap_cis(y, after, lesions, classes)["balanced_accuracy"] or (np.nan, np.nan)
        summary.loc[label, ["balanced_accuracy_ci_low", "balanced_accuracy_ci_high"]] = [low, high]

    final = ensembles[f"ensemble + TTA ({cfg.eval.tta})"][1]
    # each non-test image scored by the member that validated on it, at that member's temperature
    scaled = np.concatenate([np.asarray(m.val_tta, dtype=np.float64) / m.temperature for m in members], axis=1)
    point = fit_operating_point(scaled, y_pool, classes, sensitivity=cfg.eval.triage_sensitivity, temperatures=[1.0])
    thresholds = point.thresholds
    extra = {"name": root.name, "tta": cfg.eval.tta, "folds": folds, "weighting": weighting,
             "note": "thresholds chosen on out-of-fold validation predictions; never on test"}
    unsure = point.unsure
    if unsure is not None:  # the predictor's "unsure" flag, fitted like a single run's but on out-of-fold data
        extra.update({"unsure_threshold": unsure.threshold, "unsure_rule": unsure.rule + " (out-of-fold)"})
    write_manifest(root, [m.run.model for m in members], weights=weights, thresholds=thresholds, extra=extra)
    seconds = _write_artifacts(root, cfg, data, test, y, classes, final, ensembles, oof[pool], y_pool,
                               fold_frame, summary, thresholds, members, t0)
    return CVResult(root, fold_frame, summary, seconds)


def _summary(folds: pd.DataFrame, ensembles: dict, y: np.ndarray, classes, topk, bins: int, tta: str) -> pd.DataFrame:
    metrics = [c for c in folds.columns if c not in ("fold", "tta", "val_balanced_accuracy", "temperature")]
    rows = {}
    for label, name in (("none", "single fold"), (tta, f"single fold + TTA ({tta})")):
        sub = folds[folds["tta"] == label][metrics]
        rows[f"{name}: mean"] = sub.mean()
        rows[f"{name}: std"] = sub.std(ddof=1)
    for label, (before, after) in ensembles.items():
        rows[label] = pd.Series(_scores(y, before, after, classes, topk, bins))
    frame = pd.DataFrame(rows).T[metrics]
    frame.index.name = "model"
    return frame


def _write_artifacts(root: Path, cfg: ExperimentConfig, data: PreparedData, test: np.ndarray, y: np.ndarray,
                     classes: tuple[str, ...], final: np.ndarray, ensembles: dict, p_oof: np.ndarray,
                     y_oof: np.ndarray, folds: pd.DataFrame, summary: pd.DataFrame, thresholds: dict,
                     members: list[_Member], t0: float) -> float:
    from lesionlab.engine.core.run_data import load_run

    metrics = write_evaluation(root, data.table.iloc[test], y, final, classes, cfg.eval.topk, thresholds=thresholds,
                               sensitivity_target=cfg.eval.triage_sensitivity)
    loaded = load_run(root)  # the artifact exactly as `evaluate` / `predict` load it
    check = min(len(test), 32)
    probs = predict_probs(loaded.model, data.images, loaded.prep.mean, loaded.prep.std,
                          indices=data.rows[test[:check]], temperature=loaded.prep.temperature, tta=loaded.prep.tta)
    artifact_diff = float(np.abs(probs - final[:check]).max())
    if artifact_diff > 1e-4:
        logger.warning("The saved ensemble predicts differently from the evaluated one (max |Δp| %.2e)", artifact_diff)
    key = f"ensemble + TTA ({cfg.eval.tta})"
    cal = {"temperature_label": "per member, each fitted on its own validation fold",
           "before": calibration_summary(y, ensembles[key][0], cfg.eval.ece_bins),
           "after": calibration_summary(y, final, cfg.eval.ece_bins), "bins": cfg.eval.ece_bins,
           "note": "ensemble + TTA on the held-out test split; members' temperatures fitted on their validation folds"}
    (root / "calibration.json").write_text(json.dumps(json_safe(cal), indent=2))
    from lesionlab.reports.diagnostic_plots import plot_reliability

    plot_reliability(y, {"before temperature scaling": ensembles[key][0], "after (member temperatures)": final},
                     root / "figures" / "reliability.png", cfg.eval.ece_bins)
    write_operating_points(root, y_oof, p_oof, y, final, loaded.prep, cfg)
    if cfg.eval.gradcam_images > 0:
        write_gradcam(root, loaded.model, data, test, final, loaded.prep, cfg)
    folds.to_csv(root / "cv_folds.csv", index=False)
    summary.to_csv(root / "cv_summary.csv")
    seconds = time.perf_counter() - t0
    fit = {f"fold {k}": json.loads((m.run.root / "timings.json").read_text())["total"] for k, m in enumerate(members)}
    (root / "cv.json").write_text(json.dumps(json_safe({
        "folds": len(members), "test_images": len(test), "seconds_total": seconds, "seconds_per_fold": fit,
        "artifact_check_max_abs_diff": artifact_diff, "thresholds": thresholds}), indent=2))
    write_evaluation_report(root, metrics, title=f"LesionLab cross-validation: {cfg.name} ({len(members)} folds)",
                            subtitle=f"{root.name} · ensemble + TTA ({cfg.eval.tta}) on the held-out lesion-disjoint "
                            f"test split ({len(test)} images) · {cfg.data.image_size}px · backbone "
                            f"{cfg.model.backbone} · {seconds:.0f}s",
                            dataset=cfg.data.dataset, extra_sections=cv_sections(root, summary, folds, members))
    logger.info("Cross-validation done in %.0fs: %s", seconds, root)
    return seconds
