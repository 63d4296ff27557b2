"""``lesionlab transfer-report``: one model on several datasets — does it generalise beyond its own split?

Per set: balanced accuracy, macro AUC and calibration error on the images whose diagnosis has a class in the model's
taxonomy; melanoma AUC and priority-1 sensitivity / specificity at the model's stored triage operating point, with
95 % bootstrap intervals that resample lesions; the OOD-flag rate when the model carries an OOD detector. Images
whose diagnosis lies outside the model's classes are counted and described, never dropped silently; images (or
lesions, or patients) the model trained or validated on are refused, as in ``lesionlab evaluate``.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lesionlab.config import DataConfig
from lesionlab.data.prepare import prepare_data
from lesionlab.data.taxonomy import can_map, label_map, triage_priority
from lesionlab.engine.core.run_data import LoadedRun, describe_seen, prepare_run_data, seen_by_kind
from lesionlab.engine.evaluate import SeenDataError
from lesionlab.errors import EvaluationInputError
from lesionlab.evaluation.bootstrap import binary_auc, bootstrap_ci
from lesionlab.evaluation.metrics import MetricWarning, balanced_accuracy, one_vs_rest_auc
from lesionlab.evaluation.operating_points import most_severe_suspected
from lesionlab.inference.calibration import expected_calibration_error
from lesionlab.inference.predict import predict_probs

logger = logging.getLogger(__name__)

#: The pseudo-dataset name for the run's own held-out test split.
OWN_TEST = "test"
MELANOMA_CODES = ("mel", "MEL", "melanoma")
#: Optional per-image OOD flags for image files: 1 flagged, 0 not, NaN unknown; None when the model has no detector.
OodFlagger = Callable[[Sequence[str]], np.ndarray | None]


@dataclass(frozen=True)
class SetScores:
    """One dataset scored by one model: a row per image (unseen only) and the headline numbers."""

    name: str
    frame: pd.DataFrame  # image_id, lesion_id, diagnosis, truth (model class or None), melanoma, p1_truth, ...
    summary: dict


def load_set(run: LoadedRun, name: str, *, data_root: str | None = None, options: Mapping[str, object] | None = None,
             exclude_seen: bool = False) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, str, int]:
    """(table, images, rows, taxonomy name, seen excluded) of one set, at the model's crop and size."""
    prep = run.prep
    if name == OWN_TEST:
        _, data = prepare_run_data(run, data_root)
        test = data.indices("test")
        return data.table.iloc[test].reset_index(drop=True), data.images, data.rows[test], data.dataset.taxonomy.name, 0
    cfg = DataConfig(dataset=name, root=data_root, crop=prep.crop, image_size=prep.image_size, canonical=prep.canonical,
                     options=dict(options or {}))
    data = prepare_data(cfg, progress=False, with_split=False)
    flags = seen_by_kind(data.table, run.split_files)
    seen = flags.any(axis=1).to_numpy()
    if seen.any() and not exclude_seen:
        raise SeenDataError(f"{name}: {int(seen.sum())} of {len(seen)} images were used to train or validate this "
                            f"model, or share a lesion or patient with one that was ({describe_seen(flags)}). Pass "
                            "--exclude-seen to drop them.")
    table = data.table[~seen].reset_index(drop=True)
    return table, data.images, data.rows[~seen], data.dataset.taxonomy.name, int(seen.sum())


def _truths(table: pd.DataFrame, source: str, target: str) -> pd.DataFrame:
    """Model-class truth (None outside the taxonomy), melanoma truth and priority-1 truth (NaN where unknown)."""
    if not can_map(source, target):
        raise EvaluationInputError(f"no label map from the set's {source!r} labels to the model's {target!r} classes")
    truth = table["label"].map(label_map(source, target))
    to_triage = label_map(source, "triage") if can_map(source, "triage") else {}
    if "melanoma" in table:  # the dataset's own melanoma status (ISIC 2020's target covers 'unknown' too)
        melanoma = table["melanoma"].map(lambda v: float(bool(v)) if pd.notna(v) else np.nan)
    elif can_map(source, "ham7"):
        melanoma = table["label"].map(label_map(source, "ham7")).map(lambda t: np.nan if pd.isna(t) else
                                                                      float(t == "mel"))
    else:  # e.g. a triage-labelled set: melanoma is not told apart from the other priority-1 diagnoses
        melanoma = pd.Series(np.nan, index=table.index)
    tri = table["label"].map(to_triage)
    p1 = tri.map(lambda t: np.nan if pd.isna(t) else float(t == "P1"))
    p1 = p1.where(p1.notna(), truth.map(lambda t: np.nan if pd.isna(t) else float(triage_priority(t) == 1)))
    p1 = p1.where(melanoma != 1.0, 1.0)  # a melanoma is priority 1 whatever the rest of its record says
    return pd.DataFrame({"truth": truth, "melanoma": melanoma, "p1_truth": p1})


def _rate(flags: np.ndarray, truth: np.ndarray, want: bool) -> Callable[[np.ndarray], float]:
    def stat(idx: np.ndarray) -> float:
        t, f = truth[idx], flags[idx]
        sel = t == (1.0 if want else 0.0)
        return float((f[sel] == want).mean()) if sel.any() else float("nan")

    return stat


def score_set(run: LoadedRun, name: str, *, data_root: str | None = None, options: Mapping[str, object] | None = None,
              exclude_seen: bool = False, ood: OodFlagger | None = None, n_boot: int = 1000,
              seed: int = 0) -> SetScores:
    """Predict every unseen image of one set and compute its row of the shift table."""
    prep, classes = run.prep, tuple(run.prep.class_names)
    table, images, rows, source, excluded = load_set(run, name, data_root=data_root, options=options,
                                                     exclude_seen=exclude_seen)
    if not len(table):
        raise EvaluationInputError(f"{name}: no unseen images left to evaluate")
    probs = predict_probs(run.model, images, prep.mean, prep.std, indices=rows, temperature=prep.temperature,
                          tta=prep.tta)
    truths = _truths(table, source, prep.taxonomy)
    decision = most_severe_suspected(probs, classes, prep.thresholds)
    priority = np.array([triage_priority(c) for c in classes])[decision]
    frame = pd.DataFrame({"image_id": table["image_id"].astype(str), "lesion_id": table["lesion_id"].astype(str),
                          "diagnosis": table["label"].astype(str), **truths,
                          "prediction": [classes[i] for i in probs.argmax(axis=1)], "triage_priority": priority})
    frame[[f"p_{c}" for c in classes]] = probs
    flags = ood([str(p) for p in table["path"]]) if ood is not None else None
    frame["ood"] = flags if flags is not None else np.nan
    inside = frame["truth"].notna().to_numpy()
    y = frame.loc[inside, "truth"].map({c: i for i, c in enumerate(classes)}).to_numpy(dtype=int)
    lesions = frame["lesion_id"].to_numpy()
    summary = {"dataset": name, "images": len(frame) + excluded, "seen_excluded": excluded,
               "scored": int(inside.sum()), "outside_taxonomy": int((~inside).sum())}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MetricWarning)
        if inside.any():
            p_in = probs[inside]
            summary.update(balanced_accuracy=balanced_accuracy(y, p_in.argmax(axis=1), len(classes)),
                           auc_macro=float(np.nanmean(auc)) if np.isfinite(auc := one_vs_rest_auc(
                               y, p_in, classes)).any() else float("nan"),
                           ece=expected_calibration_error(y, p_in))
    # the melanoma score: P(melanoma), or P(priority 1) for a triage model
    mel_code = next((c for c in classes if c in MELANOMA_CODES), "P1" if "P1" in classes else None)
    mel = frame["melanoma"].to_numpy(dtype=float)
    known = np.isfinite(mel)
    summary["melanomas"] = int(np.nansum(mel))
    if mel_code is not None and known.any():
        score = probs[:, classes.index(mel_code)]
        idx = np.flatnonzero(known)
        summary["melanoma_auc"] = binary_auc(mel[idx] == 1, score[idx])
        summary["melanoma_auc_ci"] = bootstrap_ci(lambda i: binary_auc(mel[idx][i] == 1, score[idx][i]), lesions[idx],
                                                  n_boot=n_boot, seed=seed)
    p1 = frame["p1_truth"].to_numpy(dtype=float)
    flagged = priority == 1
    for key, want in (("p1_sensitivity", True), ("p1_specificity", False)):
        stat = _rate(flagged, p1, want)
        summary[key] = stat(np.arange(len(frame)))
        summary[f"{key}_ci"] = bootstrap_ci(stat, lesions, n_boot=n_boot, seed=seed)
    summary["p1_truth_known"] = int(np.isfinite(p1).sum())
    summary["ood_flag_rate"] = float(np.nanmean(flags)) if flags is not None and np.isfinite(flags).any() else None
    return SetScores(name, frame, summary)


def outside_summary(scores: Sequence[SetScores], classes: Sequence[str]) -> pd.DataFrame:
    """Per set and diagnosis outside the model's classes: count, what the model called them, how often priority 1."""
    rows = []
    for s in scores:
        out = s.frame[s.frame["truth"].isna()]
        for dx, g in out.groupby("diagnosis"):
            top = g["prediction"].value_counts().head(3)
            rows.append({"dataset": s.name, "diagnosis": dx, "images": len(g),
                         "model's top-1 calls": ", ".join(f"{k} {v}" for k, v in top.items()),
                         "share given priority 1": float((g["triage_priority"] == 1).mean()),
                         "OOD-flag rate": float(g["ood"].mean()) if g["ood"].notna().any() else float("nan")})
    return pd.DataFrame(rows, columns=["dataset", "diagnosis", "images", "model's top-1 calls",
                                       "share given priority 1", "OOD-flag rate"])


def shift_table(scores: Sequence[SetScores]) -> pd.DataFrame:
    """The shift table: one row per set."""

    def ci(s: dict, key: str) -> str:
        lo, hi = s.get(f"{key}_ci", (np.nan, np.nan))
        v = s.get(key, np.nan)
        return "–" if not np.isfinite(v) else f"{v:.3f} [{lo:.3f}, {hi:.3f}]" if np.isfinite(lo) else f"{v:.3f}"

    rows = []
    for sc in scores:
        s = sc.summary
        rows.append({"dataset": s["dataset"], "images": s["images"], "scored": s["scored"],
                     "outside taxonomy": s["outside_taxonomy"], "seen, excluded": s["seen_excluded"],
                     "balanced accuracy": s.get("balanced_accuracy", np.nan), "macro AUC": s.get("auc_macro", np.nan),
                     "ECE": s.get("ece", np.nan), "melanomas": s["melanomas"],
                     "melanoma AUC [95% CI]": ci(s, "melanoma_auc"),
                     "P1 sensitivity [95% CI]": ci(s, "p1_sensitivity"),
                     "P1 specificity [95% CI]": ci(s, "p1_specificity"),
                     "OOD-flag rate": s["ood_flag_rate"] if s["ood_flag_rate"] is not None else "n/a"})
    return pd.DataFrame(rows).set_index("dataset")


def write_predictions(directory: Path, scores: Sequence[SetScores]) -> None:
    for s in scores:
        s.frame.to_csv(directory / f"predictions_{s.name.replace(':', '-')}.csv", index=False)
