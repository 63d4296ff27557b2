"""Bootstrap 95 % confidence intervals that resample *lesions*, not images, and the subgroup table.

Images of one lesion are correlated (HAM10000 holds up to six images of a lesion), so a replicate draws lesions
with replacement and takes every image of each drawn lesion (a cluster bootstrap). Each replicate is a weight per
image (how often its lesion was drawn), so every metric is computed in closed form over all replicates at once:
balanced accuracy, accuracy, per-class recall, one-vs-rest AUC (weighted Mann-Whitney) and the triage operating
point's priority-1 sensitivity and specificity. Intervals are percentile intervals; a replicate without a class
leaves that class's figure out (NaN-aware percentiles).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from lesionlab.data.taxonomy import triage_priority
from lesionlab.evaluation.operating_points import most_severe_suspected

DEFAULT_REPLICATES = 1000
AGE_BANDS = ((0, 30, "<30"), (30, 45, "30-44"), (45, 60, "45-59"), (60, 75, "60-74"), (75, 200, "≥75"))


def lesion_weights(groups: np.ndarray, replicates: int, seed: int = 0) -> np.ndarray:
    """``(B, N)`` image weights: how many times each image's lesion was drawn in each replicate."""
    codes, inverse = np.unique(np.asarray(groups).astype(str), return_inverse=True)
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(len(codes), np.full(len(codes), 1 / len(codes)), size=replicates)  # (B, L)
    return draws[:, inverse].astype(np.float64)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def weighted_auc(w: np.ndarray, positive: np.ndarray, score: np.ndarray) -> np.ndarray:
    """One-vs-rest AUC per replicate (rows of ``w``); ties count one half."""
    order = np.argsort(score, kind="mergesort")
    s, pos, ws = score[order], positive[order], w[:, order]
    neg_w = np.where(pos, 0.0, ws)
    below = np.cumsum(neg_w, axis=1) - neg_w  # negatives strictly before (ties handled below)
    _, start, counts = np.unique(s, return_index=True, return_counts=True)
    if (counts > 1).any():  # ties: a positive beats half of the tied negatives
        group = np.repeat(np.arange(len(start)), counts)
        tie_neg = np.add.reduceat(neg_w, start, axis=1)[:, group]
        before_group = (np.cumsum(neg_w, axis=1) - neg_w)[:, start][:, group]
        below = before_group + 0.5 * tie_neg
    num = (np.where(pos, ws, 0.0) * below).sum(axis=1)
    return _ratio(num, np.where(pos, ws, 0).sum(axis=1) * neg_w.sum(axis=1))


def replicate_metrics(w: np.ndarray, y: np.ndarray, probs: np.ndarray, class_names: Sequence[str],
                      thresholds: Mapping[str, float] | None = None) -> dict[str, np.ndarray]:
    """Every bootstrapped figure as an array over replicates (``w``: ``(B, N)`` weights)."""
    pred = probs.argmax(axis=1)
    correct = (pred == y).astype(np.float64)
    out: dict[str, np.ndarray] = {"accuracy": _ratio(w @ correct, w.sum(axis=1))}
    recalls, aucs = [], []
    for c, name in enumerate(class_names):
        is_c = (y == c).astype(np.float64)
        recalls.append(_ratio(w @ (is_c * correct), w @ is_c))
        aucs.append(weighted_auc(w, y == c, probs[:, c]) if 0 < is_c.sum() < len(y) else np.full(len(w), np.nan))
        out[f"recall:{name}"] = recalls[-1]
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # replicates without any class of a column: NaN
        out["balanced_accuracy"] = np.nanmean(np.stack(recalls), axis=0) if recalls else np.nan
        out["auc_macro"] = np.nanmean(np.stack(aucs), axis=0)
    truth_p1, flag_p1 = priority1(y, probs, class_names, thresholds)
    out["priority1_sensitivity"] = _ratio(w @ (truth_p1 & flag_p1), w @ truth_p1)
    out["priority1_specificity"] = _ratio(w @ (~truth_p1 & ~flag_p1), w @ ~truth_p1)
    return out


def priority1(y: np.ndarray, probs: np.ndarray, class_names: Sequence[str],
              thresholds: Mapping[str, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(truth is priority 1, decision is priority 1) per image under the most-severe-suspected rule."""
    priority = np.array([triage_priority(c) for c in class_names])
    decision = most_severe_suspected(probs, class_names, dict(thresholds or {}))
    return priority[np.asarray(y)] == 1, priority[decision] == 1


def bootstrap_cis(y: np.ndarray, probs: np.ndarray, groups: np.ndarray, class_names: Sequence[str], *,
                  thresholds: Mapping[str, float] | None = None, replicates: int = DEFAULT_REPLICATES,
                  seed: int = 0, chunk: int = 200) -> dict:
    """95 % percentile intervals of the headline figures, resampling the lesions ``groups``."""
    y, probs = np.asarray(y), np.asarray(probs, dtype=np.float64)
    parts: dict[str, list[np.ndarray]] = {}
    for start in range(0, replicates, chunk):
        w = lesion_weights(groups, min(chunk, replicates - start), seed=seed + start)
        for k, v in replicate_metrics(w, y, probs, class_names, thresholds).items():
            parts.setdefault(k, []).append(np.atleast_1d(v))
    out = {k: _interval(np.concatenate(v)) for k, v in parts.items()}
    recall = {k.split(":", 1)[1]: out.pop(k) for k in list(out) if k.startswith("recall:")}
    return {"method": f"lesion-level bootstrap, {replicates} replicates, 2.5th-97.5th percentiles",
            "lesions": len(np.unique(np.asarray(groups).astype(str))), "replicates": replicates,
            **out, "recall": recall}


def _interval(values: np.ndarray) -> list[float] | None:
    finite = values[np.isfinite(values)]
    if len(finite) < max(10, len(values) // 2):
        return None
    return [float(np.percentile(finite, 2.5)), float(np.percentile(finite, 97.5))]


def subgroup_columns(table: pd.DataFrame) -> dict[str, pd.Series]:
    """age band / sex / site labels per row, for the fields the table has with more than one value."""
    out = {}
    if "age" in table and pd.to_numeric(table["age"], errors="coerce").notna().any():
        age = pd.to_numeric(table["age"], errors="coerce")
        band = pd.Series("unknown", index=table.index, dtype=object)
        for lo, hi, label in AGE_BANDS:
            band[(age >= lo) & (age < hi)] = label
        out["age band"] = band
    for col in ("sex", "site"):
        if col in table and table[col].astype(str).nunique() > 1:
            out[col] = table[col].fillna("unknown").astype(str)
    return out


def subgroup_table(table: pd.DataFrame, y: np.ndarray, probs: np.ndarray, class_names: Sequence[str], *,
                   thresholds: Mapping[str, float] | None = None, replicates: int = DEFAULT_REPLICATES,
                   seed: int = 0, min_n: int = 10) -> pd.DataFrame:
    """Per age band, sex and site: n, balanced accuracy and priority-1 (malignant) sensitivity with lesion-level
    95 % CIs. ``flag`` marks a subgroup whose interval lies wholly below the overall figure."""
    y, probs = np.asarray(y), np.asarray(probs, dtype=np.float64)
    lesions = table["lesion_id"].astype(str).to_numpy() if "lesion_id" in table else np.arange(len(y)).astype(str)
    overall = replicate_metrics(np.ones((1, len(y))), y, probs, class_names, thresholds)
    rows = []
    for field, labels in subgroup_columns(table.reset_index(drop=True)).items():
        bands = [label for *_, label in AGE_BANDS]
        for value in sorted(labels.unique(), key=lambda v: (bands.index(v) if v in bands else len(bands), str(v))):
            mask = (labels == value).to_numpy()
            if mask.sum() < min_n:
                continue
            point = replicate_metrics(np.ones((1, int(mask.sum()))), y[mask], probs[mask], class_names, thresholds)
            ci = bootstrap_cis(y[mask], probs[mask], lesions[mask], class_names, thresholds=thresholds,
                               replicates=replicates, seed=seed)
            row = {"field": field, "subgroup": value, "n": int(mask.sum()),
                   "priority-1 n": int(priority1(y[mask], probs[mask], class_names, thresholds)[0].sum())}
            flags = []
            for key, label in (("balanced_accuracy", "balanced accuracy"), ("priority1_sensitivity",
                                                                             "malignant sensitivity")):
                lo_hi = ci.get(key) or [np.nan, np.nan]
                row.update({label: float(point[key][0]), f"{label} CI low": lo_hi[0], f"{label} CI high": lo_hi[1]})
                if np.isfinite(lo_hi[1]) and lo_hi[1] < float(overall[key][0]):
                    flags.append(f"{label} below overall")
            row["flag"] = "; ".join(flags)
            rows.append(row)
    return pd.DataFrame(rows)


# Generic statistics over whole groups (the transfer report).


def binary_auc(positive: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC by the rank-sum (Mann-Whitney) formula; NaN when only one class is present."""
    positive = np.asarray(positive, dtype=bool)
    n1, n0 = int(positive.sum()), int((~positive).sum())
    if n1 == 0 or n0 == 0:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[positive].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def group_members(groups: Sequence[object] | np.ndarray) -> list[np.ndarray]:
    """Row positions of each group (lesion or patient id), in first-appearance order."""
    codes, _ = pd.factorize(pd.Series(list(groups), dtype=object).astype(str), sort=False)
    order = np.argsort(codes, kind="stable")
    return np.split(order, np.cumsum(np.bincount(codes))[:-1]) if len(codes) else []


def bootstrap_ci(stat: Callable[[np.ndarray], float], groups: Sequence[object] | np.ndarray, *, n_boot: int = 1000,
                 seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """``level`` percentile interval of ``stat(row_positions)`` over ``n_boot`` resamples of whole groups.

    Resamples where the statistic is undefined (NaN, e.g. no positive drawn) are skipped; fewer than half
    defined gives ``(nan, nan)``.
    """
    members = group_members(groups)
    if not members or n_boot < 1:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_boot):
        pick = rng.integers(0, len(members), len(members))
        value = stat(np.concatenate([members[i] for i in pick]))
        if np.isfinite(value):
            values.append(value)
    if len(values) < n_boot / 2:
        return float("nan"), float("nan")
    tail = (1 - level) / 2
    lo, hi = np.quantile(values, [tail, 1 - tail])
    return float(lo), float(hi)
