"""``lesionlab adapt MODEL --dataset ...``: a clinic's labelled images refit the temperature and the triage operating
point of a model for its population, in a new model folder (:mod:`lesionlab.serving.adapted`).

What is fitted (``method``, :data:`ADAPT_METHODS`): ``temperature`` — a site temperature on top of the base model's
calibrated probabilities (temperature scaling, Guo et al. 2017) and the priority-1 thresholds reaching
``sensitivity``, set by the class-conditional split-conformal rule so that the clinic's *new* malignant cases reach
it (:func:`~lesionlab.evaluation.operating_points.threshold_for_sensitivity`; the base model's thresholds stay for
priority-1 classes the clinic's images lack); ``head`` — first a site head on the base model's frozen features (a
linear probe over the classes the clinic has, :mod:`lesionlab.inference.site_head`), then temperature and
thresholds on its out-of-fold outputs; ``auto`` — whichever of the two has the lower cross-validated log-loss on the
adaptation images. The backbone is not changed.

How it is judged: repeated 2-fold cross-fitting on lesions. Each repeat halves the lesions at random (stratified by
class), adapts on one half and decides the other, and the other way round; every image is then decided by an
adaptation that did not see it. ``before`` is the base model on all images, ``after`` the cross-fitted decisions
(the first repeat, with lesion-bootstrap intervals) and ``spread`` the figures over all repeats. The model written
is fitted on all images.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import StratifiedGroupKFold
from tqdm.auto import tqdm

from lesionlab.builtin.registry import is_builtin_ref
from lesionlab.config import DataConfig
from lesionlab.data.datasets import load_dataset
from lesionlab.data.splits import _quiet_sklearn
from lesionlab.data.table import DatasetError
from lesionlab.data.taxonomy import LabelMappingError, triage_priority
from lesionlab.errors import LesionLabError
from lesionlab.evaluation.bootstrap import DEFAULT_REPLICATES, binary_auc, bootstrap_ci
from lesionlab.evaluation.operating_point_fit import fit_operating_point
from lesionlab.evaluation.operating_points import most_severe_suspected
from lesionlab.inference.calibration import probs_from_view_logits
from lesionlab.inference.predict import predict_view_logits
from lesionlab.inference.quality import NotAssessableError
from lesionlab.inference.site_head import (
    MIN_HEAD_CLASS,
    FeaturesAndOutput,
    SiteHeadWeights,
    fit_site_head,
    head_classes,
)
from lesionlab.registry import Registry
from lesionlab.serving.adapted import ADAPTATION_FILE, HEAD_FILE, SiteAdapted
from lesionlab.serving.predictor import Predictor

logger = logging.getLogger(__name__)

#: The fewest labelled images and priority-1 (malignant) cases an adaptation accepts: each half of a 2-fold
#: cross-fit then still holds 5 malignant cases to set a threshold on.
MIN_IMAGES = 30
MIN_MALIGNANT = 10


class AdaptationError(LesionLabError, ValueError):
    """The images cannot adapt this model (too few, one class, seen in training, another label set)."""


@dataclass(frozen=True)
class SiteViews:
    """The base model on the clinic's images, per test-time view: calibrated log-probabilities ``(V, N, C)`` and
    pooled features of every member ``(V, N, F)`` (None when the model gives none, e.g. an ONNX export)."""

    log_probs: np.ndarray
    features: np.ndarray | None


@dataclass(frozen=True)
class SiteFit:
    """A site temperature and the priority-1 thresholds under it, on top of an optional site head."""

    temperature: float
    thresholds: dict[str, float]
    head: SiteHeadWeights | None = None
    method: str = "temperature"

    def log_probs(self, views: SiteViews, rows: np.ndarray) -> np.ndarray:
        """The adapted (pre-temperature) log-probabilities ``(V, n, C)`` of ``rows``."""
        if self.head is None:
            return views.log_probs[:, rows]
        assert views.features is not None
        return np.stack([self.head.log_probs(views.features[v, rows], views.log_probs[v, rows])
                         for v in range(len(views.log_probs))])

    def decide(self, views: SiteViews, rows: np.ndarray, class_names: Sequence[str]
               ) -> tuple[np.ndarray, np.ndarray]:
        """(probabilities, is priority 1) of ``rows``."""
        probs = probs_from_view_logits(self.log_probs(views, rows), self.temperature)
        decision = most_severe_suspected(probs, class_names, self.thresholds)
        return probs, np.array([triage_priority(class_names[c]) == 1 for c in decision])


def _nll(view_log_probs: np.ndarray, y: np.ndarray, temperature: float) -> float:
    probs = probs_from_view_logits(view_log_probs, temperature)
    return float(-np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, None)).mean())


def _operating_point(view_log_probs: np.ndarray, y: np.ndarray, class_names: Sequence[str],
                     base_thresholds: dict[str, float], sensitivity: float) -> tuple[float, dict[str, float]]:
    point = fit_operating_point(view_log_probs, y, class_names, sensitivity=sensitivity, unsure=False,
                                conformal=True)
    return point.temperature, {**base_thresholds, **point.thresholds}


def _fit_temperature(views: SiteViews, rows: np.ndarray, y: np.ndarray, lesions: np.ndarray,
                     class_names: Sequence[str], base_thresholds: dict[str, float], sensitivity: float) -> SiteFit:
    return SiteFit(*_operating_point(views.log_probs[:, rows], y[rows], class_names, base_thresholds, sensitivity))


def _fit_head(views: SiteViews, rows: np.ndarray, y: np.ndarray, lesions: np.ndarray, class_names: Sequence[str],
              base_thresholds: dict[str, float], sensitivity: float) -> SiteFit:
    if views.features is None:
        raise AdaptationError("this model gives no features (an ONNX export without them): use --method temperature")
    if len(head_classes(y[rows])) < 2:
        raise AdaptationError(f"a site head needs two classes with at least {MIN_HEAD_CLASS} images each; these "
                              f"images have {dict(zip(*np.unique(y[rows], return_counts=True), strict=True))}")
    head, oof = fit_site_head(views.features[:, rows], views.log_probs[:, rows], y[rows], lesions[rows])
    return SiteFit(*_operating_point(oof, y[rows], class_names, base_thresholds, sensitivity), head=head,
                   method="head")


def _fit_auto(views: SiteViews, rows: np.ndarray, y: np.ndarray, lesions: np.ndarray, class_names: Sequence[str],
              base_thresholds: dict[str, float], sensitivity: float) -> SiteFit:
    plain = _fit_temperature(views, rows, y, lesions, class_names, base_thresholds, sensitivity)
    if views.features is None or len(head_classes(y[rows])) < 2:
        return replace(plain, method="auto: temperature (no head possible)")
    head, oof = fit_site_head(views.features[:, rows], views.log_probs[:, rows], y[rows], lesions[rows])
    temperature, thresholds = _operating_point(oof, y[rows], class_names, base_thresholds, sensitivity)
    if _nll(oof, y[rows], temperature) < _nll(views.log_probs[:, rows], y[rows], plain.temperature):
        return SiteFit(temperature, thresholds, head, "auto: head")
    return replace(plain, method="auto: temperature")


#: How ``lesionlab adapt --method`` fits a site: (views, rows, y, lesions, classes, base thresholds, sensitivity).
ADAPT_METHODS: Registry[Callable[..., SiteFit]] = Registry("adaptation method")
ADAPT_METHODS.add("temperature", _fit_temperature,
                  help="site temperature + priority-1 thresholds on the base model's probabilities")
ADAPT_METHODS.add("head", _fit_head, help="a site head on the frozen features (classes with >= 5 images), then "
                  "temperature + thresholds on its out-of-fold outputs")
ADAPT_METHODS.add("auto", _fit_auto, help="head or temperature, whichever has the lower cross-validated log-loss")


def check_counts(labels: Sequence[str], malignant: int) -> None:
    """Refuse too few images, one class only or too few malignant cases, saying what is needed."""
    y = list(labels)
    if len(y) < MIN_IMAGES:
        raise AdaptationError(f"{len(y)} labelled images are too few to adapt: at least {MIN_IMAGES} are needed "
                              f"(with at least {MIN_MALIGNANT} malignant, priority-1 cases)")
    present = sorted(set(y))
    if len(present) < 2:
        raise AdaptationError(f"all {len(y)} images are of one class ({present[0]}): adaptation needs malignant "
                              "and benign cases")
    if malignant < MIN_MALIGNANT:
        raise AdaptationError(f"{malignant} malignant (priority-1: mel, bcc, akiec/scc) images are too few to set a "
                              f"triage threshold: at least {MIN_MALIGNANT} are needed ({len(y)} images given)")


def check_unseen(table: pd.DataFrame, predictor: Predictor) -> None:
    """Refuse images the base model trained or validated on (its figures on them would be optimistic)."""
    seen = [why for why in (predictor.seen_reason(i, lesion)[1] for i, lesion in
                            zip(table["image_id"], table["lesion_id"], strict=True)) if why]
    if seen:
        raise AdaptationError(f"{len(seen)} of these images were used to train or validate the base model, so its "
                              f"figures on them are optimistic; leave them out (first: {seen[0]})")


def cross_fit(views: SiteViews, y: np.ndarray, lesions: np.ndarray, class_names: Sequence[str],
              base_thresholds: dict[str, float], sensitivity: float, repeats: int, seed: int = 0,
              method: str = "temperature") -> list[tuple[np.ndarray, np.ndarray, list[str]]]:
    """Out-of-fold (probabilities, is priority 1, the two halves' fitted methods) of every image, for each of
    ``repeats`` random 2-fold halvings."""
    fit = ADAPT_METHODS.get(method)
    out = []
    for r in tqdm(range(repeats), desc="Cross-fitting", unit="halving", leave=False, disable=repeats < 5):
        cv = StratifiedGroupKFold(n_splits=2, shuffle=True, random_state=seed + r)
        probs = np.zeros(views.log_probs.shape[1:])
        flag = np.zeros(len(y), bool)
        with _quiet_sklearn():
            folds = list(cv.split(np.zeros(len(y)), y, lesions))
        chosen = []
        for fit_rows, score_rows in folds:
            site = fit(views, fit_rows, y, lesions, class_names, base_thresholds, sensitivity)
            probs[score_rows], flag[score_rows] = site.decide(views, score_rows, class_names)
            chosen.append(site.method)
        out.append((probs, flag, chosen))
    return out


def decision_figures(y: np.ndarray, probs: np.ndarray, flag: np.ndarray, lesions: np.ndarray,
                     class_names: Sequence[str], replicates: int) -> dict[str, Any]:
    """Priority-1 sensitivity/specificity and melanoma AUC, with lesion-bootstrap 95 % intervals."""
    truth = np.array([triage_priority(class_names[c]) == 1 for c in y])
    out: dict[str, Any] = {}
    stats = {"priority1_sensitivity": lambda r: flag[r][truth[r]].mean() if truth[r].any() else np.nan,
             "priority1_specificity": lambda r: (~flag[r][~truth[r]]).mean() if (~truth[r]).any() else np.nan}
    if "mel" in class_names:
        mel = list(class_names).index("mel")
        stats["mel_auc"] = lambda r: binary_auc(y[r] == mel, probs[r, mel])
    everything = np.arange(len(y))
    for key, stat in stats.items():
        out[key] = float(stat(everything))
        if replicates > 0:
            out[f"{key}_ci95"] = list(bootstrap_ci(stat, lesions, n_boot=replicates))
    return out


def _spread(values: Sequence[float]) -> dict[str, float]:
    v = np.asarray(values, dtype=np.float64)
    return {"mean": float(v.mean()), "median": float(np.median(v)), "p5": float(np.percentile(v, 5)),
            "p95": float(np.percentile(v, 95)), "min": float(v.min()), "max": float(v.max())}


def site_views(predictor: Predictor, images: np.ndarray, *, features: bool, progress: bool) -> SiteViews:
    """The base model's calibrated log-probabilities on every test-time view, and its features when asked."""
    prep, classes = predictor.prep, len(predictor.class_names)
    if not features:
        view_logits = predict_view_logits(SiteAdapted(predictor.model, prep.temperature), images, prep.mean, prep.std,
                                          tta=prep.tta, batch_size=32, progress=progress)
        return SiteViews(view_logits, None)
    both = predict_view_logits(FeaturesAndOutput(predictor.model), images, prep.mean, prep.std, tta=prep.tta,
                               batch_size=32, progress=progress)
    output = torch.from_numpy(both[..., -classes:]) / prep.temperature
    pooled = both[..., :-classes]  # (V, N, 0): an ONNX export without the features output
    return SiteViews(output.log_softmax(-1).numpy(), None if pooled.shape[-1] == 0 else pooled)


def adapt(model: str | Path | None, data: DataConfig, out: str | Path, *, sensitivity: float = 0.9,
          repeats: int = 20, replicates: int = DEFAULT_REPLICATES, seed: int = 0, name: str | None = None,
          method: str = "auto", progress: bool = True) -> dict[str, Any]:
    """Fit ``method``'s site adaptation of ``model`` on ``data``'s labelled images, judge it by repeated 2-fold
    cross-fitting, and write the adapted model folder ``out``; returns the record (``adaptation.json``)."""
    started = time.time()
    fit = ADAPT_METHODS.get(method)  # an unknown name lists the valid ones, before anything is read
    dataset = load_dataset(data)  # the counts are checked before the model loads
    try:
        malignant = int((dataset.relabel("triage").table["label"] == "P1").sum())
    except (DatasetError, LabelMappingError):
        malignant = MIN_MALIGNANT  # a label set without a triage map: refused below, against the model's classes
    check_counts(dataset.table["label"].astype(str), malignant)
    predictor = Predictor.load(model)
    classes = predictor.class_names
    try:
        dataset = dataset.relabel(predictor.prep.taxonomy)
    except (DatasetError, LabelMappingError):
        labels = ", ".join(sorted(set(dataset.table["label"].astype(str)))[:8])
        raise AdaptationError(f"the images' labels ({labels}) are another label set than the model's "
                              f"({predictor.prep.taxonomy}: {', '.join(classes)}) and have no map into it; relabel "
                              "them to the model's classes first") from None
    table = dataset.table.reset_index(drop=True)
    y = dataset.targets()
    check_unseen(table, predictor)
    arrays, bad = [], []
    for path, image_id in tqdm(zip(table["path"], table["image_id"], strict=True), total=len(table),
                               desc="Reading images", unit="img", disable=not progress, leave=False):
        try:
            arrays.append(predictor.preprocess(path, name=image_id))
        except NotAssessableError as exc:
            bad.append(f"{image_id}: {exc}")
    if bad:
        raise AdaptationError(f"{len(bad)} images fail the input quality gate (first: {bad[0]}); remove them")
    views = site_views(predictor, np.stack(arrays), features=method != "temperature", progress=progress)
    lesions = table["lesion_id"].astype(str).to_numpy()
    base = dict(predictor.prep.thresholds)
    before_probs = probs_from_view_logits(views.log_probs, 1.0)  # the base model as it ships
    before_flag = np.array([triage_priority(classes[c]) == 1
                            for c in most_severe_suspected(before_probs, classes, base)])
    folds = cross_fit(views, y, lesions, classes, base, sensitivity, repeats, seed, method)
    truth = np.array([triage_priority(classes[c]) == 1 for c in y])
    site = fit(views, np.arange(len(y)), y, lesions, classes, base, sensitivity)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if site.head is not None:
        site.head.save(out / HEAD_FILE)
    table.assign(split="adapt")[["image_id", "lesion_id", "label", "split"]].to_csv(out / "splits.csv", index=False)
    record: dict[str, Any] = {
        "name": name or out.name,
        "base_model": "builtin" if model is None else str(model) if is_builtin_ref(model)
        else str(Path(model).resolve()),
        "base_model_sha256": predictor.card.sha256,
        "dataset": data.dataset, "data_root": data.root, "images": len(y), "lesions": len(set(lesions)),
        "classes": {classes[i]: int((y == i).sum()) for i in np.unique(y)},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "method": site.method,
        "fitted": ("site head on the frozen features (classes "
                   f"{', '.join(classes[c] for c in site.head.classes)}; L2 C={site.head.c:g}) + " if site.head else "")
        + f"site temperature + priority-1 thresholds for sensitivity {sensitivity} on new images (split conformal; "
        "backbone unchanged)",
        "temperature": site.temperature, "thresholds": site.thresholds, "base_thresholds": base,
        "sensitivity_target": sensitivity,
        "before": decision_figures(y, before_probs, before_flag, lesions, classes, replicates),
        "after_cross_fitted": decision_figures(y, *folds[0][:2], lesions, classes, replicates),
        "cross_fitting": {
            "repeats": repeats, "folds": 2, "unit": "lesion", "method": method,
            "methods_chosen": dict(Counter(m for *_, chosen in folds for m in chosen)),
            "priority1_sensitivity": _spread([f[truth].mean() for _, f, _ in folds]),
            "priority1_specificity": _spread([(~f[~truth]).mean() for _, f, _ in folds]),
            **({"mel_auc": _spread([binary_auc(y == classes.index("mel"), p[:, classes.index("mel")])
                                    for p, _, _ in folds])} if "mel" in classes else {}),
            "held_out_half_sensitivity_ge_0.90_and_specificity_ge_0.50": float(np.mean(
                [f[truth].mean() >= 0.9 and (~f[~truth]).mean() >= 0.5 for _, f, _ in folds])),
        },
        "seconds": round(time.time() - started, 1),
    }
    (out / ADAPTATION_FILE).write_text(json.dumps(record, indent=2, default=float))
    logger.info("Adapted %s to %s (%d images, %s): temperature %.3f, thresholds %s -> %s", record["base_model"],
                data.dataset, len(y), site.method, site.temperature, site.thresholds, out)
    return record
