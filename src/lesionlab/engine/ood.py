"""Fit the OOD detector of a run (at training time, or afterwards with ``lesionlab ood fit``) and measure it on the
offline OOD benchmark (``lesionlab ood eval``): AUROC and FPR at 95 % TPR per group, beside the share of real test
lesions it flags. The detector is fitted on the training split's features and its threshold calibrated on the
validation split; test lesions are only ever scored."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from sklearn.metrics import roc_auc_score

from lesionlab.data.crops import get_crop
from lesionlab.data.prepare import PreparedData, original_split
from lesionlab.engine.core.ood_detector import (
    encoded_metadata,
    fit_run_detector,
    split_features,
    write_ood_summary,
)
from lesionlab.engine.core.run_data import LoadedRun, load_run, prepare_run_data
from lesionlab.errors import EvaluationInputError
from lesionlab.evaluation.ood_benchmark import FAR_GROUPS, far_ood_set, near_ood_set
from lesionlab.inference.ood import (
    DEFAULT_COVERAGE,
    DEFAULT_METHOD,
    OOD_METHODS,
    extract_features,
    fit_ood_detector,
    score_images,
)
from lesionlab.inference.quality import QualityConfig, assess_quality
from lesionlab.models.checkpoint import Preprocessing, store_ood

logger = logging.getLogger(__name__)

TABLE_FILE = "ood_eval.csv"


def fit_ood_run(run_dir: str | Path, method: str | None = None, coverage: float | None = None,
                data_root: str | None = None) -> dict:
    """Fit and store the detector of an existing run (``model.pt`` in place) or of every member of an ensemble
    folder; write ``ood.json`` and refresh the run's report. Returns the summary. ``method`` and ``coverage``
    default to the run's ``eval.ood`` (knn where it was none) and ``eval.ood_coverage``."""
    loaded = load_run(run_dir)
    if method is None or coverage is None:
        run_eval = loaded.config().eval
        method = method or (run_eval.ood if run_eval.ood != "none" else DEFAULT_METHOD)
        coverage = coverage or run_eval.ood_coverage
    OOD_METHODS.get(method)
    if loaded.is_ensemble:
        for member in loaded.members:
            fit_ood_run(member, method, coverage, data_root)
        loaded = load_run(run_dir)  # reload: the ensemble detector combines the members' new ones
        _, data = prepare_run_data(loaded, data_root)
        return write_ood_summary(loaded.root, loaded.model, data, loaded.prep,
                                 score_test=(loaded.root / "metrics.json").is_file()) or {}
    _, data = prepare_run_data(loaded, data_root)
    meta = encoded_metadata(loaded.model, data)
    detector = fit_run_detector(loaded.model, data, loaded.prep, method, coverage, meta)
    if detector is None:
        raise EvaluationInputError(f"{loaded.root} has no validation split to calibrate an OOD detector on")
    store_ood(loaded.root / "model.pt", detector.to_dict())
    loaded.model.ood_detector = detector
    tested = (loaded.root / "metrics.json").is_file()  # a validation-only run (eval.test=false) keeps test unseen
    summary = write_ood_summary(loaded.root, loaded.model, data, loaded.prep, meta, score_test=tested) or {}
    if (loaded.root / "model.onnx").is_file():
        logger.warning("%s/model.onnx predates the detector: re-export it ('lesionlab export %s') so the ONNX "
                       "sidecar carries it", loaded.root, loaded.root)
    if tested:
        _refresh_report(loaded.root)
    return summary


def _refresh_report(root: Path) -> None:
    from lesionlab.reports.run_report import refresh_run_report

    try:
        refresh_run_report(root)
    except (OSError, KeyError, ValueError, EvaluationInputError) as exc:
        logger.warning("Could not refresh %s/report.html: %s", root, exc)


def auroc_fpr95(id_scores: np.ndarray, ood_scores: np.ndarray) -> tuple[float, float]:
    """AUROC of OOD (positive) vs ID by score, and the share of OOD images scored at or below the 95th percentile of
    the ID scores (FPR at 95 % TPR, where "positive" for the TPR is "in distribution, kept")."""
    if len(ood_scores) == 0 or len(id_scores) == 0:
        return float("nan"), float("nan")
    y = np.r_[np.zeros(len(id_scores)), np.ones(len(ood_scores))]
    auroc = float(roc_auc_score(y, np.r_[id_scores, ood_scores]))
    return auroc, float((ood_scores <= np.quantile(id_scores, 0.95)).mean())


def _model_input(images: list[Image.Image], prep: Preprocessing) -> np.ndarray:
    crop = get_crop(prep.crop)
    return np.stack([np.asarray(crop(im, prep.image_size), dtype=np.uint8) for im in images])


def benchmark_groups(test_images: np.ndarray, prep: Preprocessing, seed: int = 0
                     ) -> dict[str, tuple[str, np.ndarray, np.ndarray]]:
    """group → (far|near, model-input uint8 images, quality-gate rejections)."""
    gate = QualityConfig()
    groups = {}
    for name, images in far_ood_set(seed=seed).items():
        if images:
            rejected = np.array([not assess_quality(im, gate).ok for im in images])
            groups[name] = ("far", _model_input(images, prep), rejected)
    near = near_ood_set(test_images, seed=seed)
    groups["corrupted (severity 5)"] = ("near", near, np.array([not assess_quality(Image.fromarray(a), gate).ok
                                                                 for a in near]))
    return groups


def _scores_by_method(loaded: LoadedRun, data: PreparedData, images: dict[str, np.ndarray],
                      methods: tuple[str, ...]) -> dict[str, tuple[float, dict[str, np.ndarray]]]:
    """(threshold, scores of every image set) of the stored detector ('stored') and of freshly fitted ``methods``."""
    model, prep = loaded.model, loaded.prep
    out: dict[str, tuple[float, dict[str, np.ndarray]]] = {}
    stored = getattr(model, "ood_detector", None)
    if loaded.is_ensemble:  # members' features: through the ensemble detector
        if stored is not None:
            out["stored"] = (stored.threshold,
                             {k: score_images(model, v, prep.mean, prep.std).score for k, v in images.items()})
        return out
    feats = {k: extract_features(model, v, prep.mean, prep.std) for k, v in images.items()}  # once for all detectors
    if stored is not None:
        out["stored"] = (stored.threshold, {k: stored.score(*fz) for k, fz in feats.items()})
    if methods:
        data = original_split(data)  # a refit: fitted on the original training lesions, thresholded on validation
        meta = encoded_metadata(model, data)
        tr = split_features(model, data, prep, "train", meta)
        va = split_features(model, data, prep, "val", meta)
        for method in methods:
            det = fit_ood_detector(method, (tr.features, tr.logits, tr.labels), (va.features, va.logits),
                                   getattr(stored, "coverage", DEFAULT_COVERAGE))
            out[method] = (det.threshold, {k: det.score(*fz) for k, fz in feats.items()})
    return out


def evaluate_ood(run_dir: str | Path, *, methods: tuple[str, ...] = ("mahalanobis", "energy", "knn"),
                 data_root: str | None = None, out_dir: str | Path | None = None, seed: int = 0) -> pd.DataFrame:
    """The OOD table of ``run_dir`` (a run or an ensemble folder): per detector and group, AUROC, FPR at 95 % TPR,
    the share flagged at the stored threshold and the share the quality gate rejects first.

    Writes ``ood_eval.csv`` and ``ood_eval.md`` (to ``out_dir`` or the run) and refreshes the run's report.
    """
    for m in methods:
        OOD_METHODS.get(m)
    loaded = load_run(run_dir)
    _, data = prepare_run_data(loaded, data_root)
    test_images = np.asarray(data.images[data.rows[data.indices("test")]])
    groups = benchmark_groups(test_images, loaded.prep, seed)
    images = {"test lesions (ID)": test_images, **{k: v[1] for k, v in groups.items()}}
    scores = _scores_by_method(loaded, data, images, methods)
    if not scores:
        raise EvaluationInputError(f"{run_dir} stores no OOD detector and no method was given; run "
                                   "'lesionlab ood fit' first")
    stored = getattr(loaded.model, "ood_detector", None)
    rows: list[dict] = []
    for detector, (threshold, by_set) in scores.items():
        id_scores = by_set["test lesions (ID)"]

        def flag(s: np.ndarray, t: float = threshold) -> float:
            return float((s > t).mean())

        rows.append({"detector": detector, "group": "test lesions (ID)", "kind": "id", "n": len(id_scores),
                     "auroc": float("nan"), "fpr95": float("nan"), "flagged": flag(id_scores), "gate_rejects": 0.0})
        for kind_name in ("far", "near"):
            names = [g for g, (kind, _, _) in groups.items() if kind == kind_name]
            for g in names:
                auroc, fpr = auroc_fpr95(id_scores, by_set[g])
                rows.append({"detector": detector, "group": g, "kind": kind_name, "n": len(by_set[g]), "auroc": auroc,
                             "fpr95": fpr, "flagged": flag(by_set[g]), "gate_rejects": float(groups[g][2].mean())})
            if kind_name == "far":
                pooled = np.concatenate([by_set[g] for g in names])
                auroc, fpr = auroc_fpr95(id_scores, pooled)
                gate = np.concatenate([groups[g][2] for g in names])
                rows.append({"detector": detector, "group": "all far-OOD", "kind": "far", "n": len(pooled),
                             "auroc": auroc, "fpr95": fpr, "flagged": flag(pooled), "gate_rejects": float(gate.mean())})
    table = pd.DataFrame(rows)
    if stored is not None:
        table["detector"] = table["detector"].replace("stored", f"stored ({stored.method})")
    directory = Path(out_dir) if out_dir else loaded.root
    directory.mkdir(parents=True, exist_ok=True)
    table.to_csv(directory / TABLE_FILE, index=False)
    (directory / "ood_eval.md").write_text(ood_markdown(table, stored))
    if out_dir is None and not loaded.is_ensemble:
        _refresh_report(loaded.root)
    return table


def ood_markdown(table: pd.DataFrame, stored: object = None) -> str:
    lines = ["| detector | group | kind | n | AUROC | FPR@95TPR | flagged at its threshold | quality gate rejects |",
             "|---|---|---|---|---|---|---|---|"]
    for r in table.itertuples():
        f = (lambda v: "–" if v != v else f"{v:.3f}")  # noqa: E731 - NaN check without numpy
        lines.append(f"| {r.detector} | {r.group} | {r.kind} | {r.n} | {f(r.auroc)} | {f(r.fpr95)} | "
                     f"{f(r.flagged)} | {f(r.gate_rejects)} |")
    note = f"\nStored rule: {stored.rule}\n" if stored is not None else ""
    return "\n".join(lines) + "\n" + note + ("\nFar groups: " + ", ".join(FAR_GROUPS) + "; near: test lesions "
                                             "under heavy corruption. ID = the run's held-out test lesions.\n")
