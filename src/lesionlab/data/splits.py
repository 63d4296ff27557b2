"""Lesion-disjoint, class-stratified splits (StratifiedGroupKFold) and the leakage check run before training."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from lesionlab.errors import LesionLabError

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
_UNITS = 20  # fractions are realised in steps of 1/_UNITS (5 %)


class LeakageError(LesionLabError, AssertionError):
    """A lesion or patient appears in more than one split."""


def split_groups(table: pd.DataFrame) -> pd.Series:
    """The grouping key: patient id where known, else lesion id (lesions never span patients)."""
    lesion = table["lesion_id"].astype(str)
    if "patient_id" in table and table["patient_id"].notna().any():
        patient = table["patient_id"]
        return patient.where(patient.notna(), "lesion:" + lesion).astype(str)
    return lesion


def lesion_disjoint_split(table: pd.DataFrame, val: float = 0.15, test: float = 0.15, seed: int = 0) -> pd.Series:
    """Assign every row to train/val/test so that no lesion (or patient) spans two splits.

    Groups are dealt into ``_UNITS`` stratified folds; ``round(test * _UNITS)`` folds form the test split,
    the next ``round(val * _UNITS)`` the validation split. Returns a Series aligned with ``table``.
    """
    groups = split_groups(table)
    n_test, n_val = round(test * _UNITS), round(val * _UNITS)
    if (test > 0 and n_test == 0) or (val > 0 and n_val == 0):
        raise ValueError(f"split fractions below {1 / _UNITS:.2f} are not supported (val={val}, test={test})")
    n_groups = groups.nunique()
    units = min(_UNITS, n_groups, int(table["label"].value_counts().max()))
    if units < 3:
        raise ValueError(f"need at least 3 lesions to split, got {n_groups}")
    scale = units / _UNITS
    n_test, n_val = max(int(test > 0), round(n_test * scale)), max(int(val > 0), round(n_val * scale))
    fold = np.full(len(table), -1)
    labels = table["label"].astype(str).to_numpy()
    with _quiet_sklearn():
        cv = StratifiedGroupKFold(n_splits=units, shuffle=True, random_state=seed)
        for k, (_, idx) in enumerate(cv.split(np.zeros(len(table)), labels, groups.to_numpy())):
            fold[idx] = k
    out = np.where(fold < n_test, "test", np.where(fold < n_test + n_val, "val", "train"))
    split = pd.Series(out, index=table.index, name="split")
    check_no_leakage(table, split)
    return split


def kfold_assignment(table: pd.DataFrame, k: int, seed: int = 0) -> pd.Series:
    """Lesion-disjoint stratified fold index 0..k-1 for every row (for cross-validation)."""
    groups = split_groups(table)
    fold = np.full(len(table), -1)
    with _quiet_sklearn():
        cv = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
        for i, (_, idx) in enumerate(cv.split(np.zeros(len(table)), table["label"].astype(str), groups)):
            fold[idx] = i
    folds = pd.Series(fold, index=table.index, name="fold")
    check_no_leakage(table, folds.astype(str))
    return folds


def check_test_unseen(table: pd.DataFrame, test: np.ndarray) -> None:
    """Raise :class:`LeakageError` when a lesion of the test rows ``test`` also appears outside the test split (a
    raised error, not an ``assert``, so the guard holds under ``python -O``)."""
    overlap = set(table.loc[table["split"] != "test", "lesion_id"]) & set(table.iloc[test]["lesion_id"])
    if overlap:
        raise LeakageError(f"{len(overlap)} test lesions also appear in the training/validation splits (e.g. "
                           f"{sorted(map(str, overlap))[:3]}); refusing to report test metrics")


def check_no_leakage(table: pd.DataFrame, split: pd.Series) -> None:
    """Raise :class:`LeakageError` if any lesion id (or patient id, when known) occurs in two splits."""
    frame = pd.DataFrame({"split": split.to_numpy(), "lesion": table["lesion_id"].astype(str).to_numpy()})
    keys = ["lesion"]
    if "patient_id" in table and table["patient_id"].notna().any():
        frame["patient"] = table["patient_id"].astype(object).to_numpy()
        keys.append("patient")
    problems = []
    for key in keys:
        sub = frame[frame[key].notna() & (frame[key].astype(str) != "None")]
        spread = sub.groupby(key)["split"].nunique()
        leaked = spread[spread > 1].index.tolist()
        if leaked:
            problems.append(f"{len(leaked)} {key}(s) in several splits (first: {leaked[:5]})")
    if problems:
        raise LeakageError("Split leaks: " + "; ".join(problems))


def split_summary(table: pd.DataFrame, split: pd.Series, classes: tuple[str, ...]) -> pd.DataFrame:
    """Images per class per split (rows: classes + total; columns: splits)."""
    counts = pd.crosstab(table["label"], split).reindex(index=list(classes), columns=list(SPLITS), fill_value=0)
    counts.loc["total"] = counts.sum()
    return counts


class _quiet_sklearn:
    """StratifiedGroupKFold warns when a class has fewer groups than folds; that is expected for rare classes."""

    def __enter__(self) -> None:
        import warnings

        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)

    def __exit__(self, *exc: Any) -> None:
        self._ctx.__exit__(*exc)
