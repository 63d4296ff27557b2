"""Training dynamics from a run's ``history.csv``: the VAE study's table.

For every metric logged for both splits (``train_X`` and ``val_X``: loss, balanced accuracy, ...) three rows —
train, validation and the overfitting gap train − validation — with the initial and final value, the best value
and its epoch, the overall change, the % change and the least-squares slope per epoch over epoch ranges.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

NAMES = {"loss": "loss", "bal_acc": "balanced accuracy", "acc": "accuracy", "auc": "macro AUC"}
LOWER_IS_BETTER = ("loss",)


def default_ranges(epochs: int, parts: int = 3) -> list[tuple[int, int]]:
    """Split ``1..epochs`` into ``parts`` consecutive ranges (fewer when there are too few epochs)."""
    parts = max(1, min(parts, epochs // 2))
    edges = np.linspace(1, epochs, parts + 1).round().astype(int)
    return [(int(edges[i]), int(edges[i + 1])) for i in range(parts)]


def _slope(epochs: np.ndarray, values: np.ndarray, lo: int, hi: int) -> float:
    keep = (epochs >= lo) & (epochs <= hi) & np.isfinite(values)
    if keep.sum() < 2:
        return float("nan")
    return float(np.polyfit(epochs[keep], values[keep], 1)[0])


def _row(label: str, epochs: np.ndarray, values: np.ndarray, lower_is_better: bool | None,
         ranges: Sequence[tuple[int, int]]) -> dict:
    finite = np.isfinite(values)
    if not finite.any():
        return {"metric": label}
    first, last = values[finite][0], values[finite][-1]
    row: dict = {"metric": label, "initial": float(first), "final": float(last), "change": float(last - first),
                 "% change": float(100 * (last - first) / abs(first)) if first != 0 else float("nan")}
    if lower_is_better is not None:
        best = int(np.nanargmin(values) if lower_is_better else np.nanargmax(values))
        row.update({"best": float(values[best]), "best epoch": int(epochs[best])})
    for lo, hi in ranges:
        row[f"slope {lo}–{hi}"] = _slope(epochs, values, lo, hi)
    return row


def dynamics_table(history: pd.DataFrame, ranges: Sequence[tuple[int, int]] | None = None) -> pd.DataFrame:
    """The dynamics table of one run (index: metric). ``ranges`` are inclusive epoch ranges for the slopes."""
    if "epoch" not in history or history.empty:
        raise ValueError("history needs an 'epoch' column and at least one row")
    epochs = history["epoch"].to_numpy(dtype=np.float64)
    ranges = list(ranges) if ranges else default_ranges(int(epochs.max()))
    rows = []
    keys = [c[len("train_"):] for c in history.columns if c.startswith("train_") and f"val_{c[6:]}" in history]
    for key in keys:
        name = NAMES.get(key, key)
        lower = key in LOWER_IS_BETTER
        train = history[f"train_{key}"].to_numpy(dtype=np.float64)
        val = history[f"val_{key}"].to_numpy(dtype=np.float64)
        rows.append(_row(f"{name}: train", epochs, train, lower, ranges))
        rows.append(_row(f"{name}: validation", epochs, val, lower, ranges))
        rows.append(_row(f"{name}: gap train − val", epochs, train - val, None, ranges))
    for col in history.columns:
        key = col[len("val_"):]
        if col.startswith("val_") and key not in keys:
            rows.append(_row(f"{NAMES.get(key, key)}: validation", epochs, history[col].to_numpy(dtype=np.float64),
                             key in LOWER_IS_BETTER, ranges))
    return pd.DataFrame(rows).set_index("metric")


def overfitting_gap(history: pd.DataFrame) -> dict[str, float]:
    """Train − validation at the last epoch for every metric logged on both splits."""
    last = history.iloc[-1]
    return {NAMES.get(c[6:], c[6:]): float(last[c] - last[f"val_{c[6:]}"])
            for c in history.columns if c.startswith("train_") and f"val_{c[6:]}" in history}


def run_dynamics(run_dir: str | Path, ranges: Sequence[tuple[int, int]] | None = None) -> pd.DataFrame:
    """:func:`dynamics_table` of ``run_dir/history.csv``."""
    path = Path(run_dir) / "history.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: is {run_dir} a LesionLab training run?")
    return dynamics_table(pd.read_csv(path), ranges)
