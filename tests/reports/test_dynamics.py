"""The training-dynamics table on histories with known slopes and gaps."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lesionlab.reports.dynamics import default_ranges, dynamics_table, overfitting_gap, run_dynamics


def history(epochs: int = 12) -> pd.DataFrame:
    e = np.arange(1, epochs + 1, dtype=float)
    return pd.DataFrame({"epoch": e, "train_loss": 2.0 - 0.1 * e, "val_loss": 2.0 - 0.05 * e,
                         "train_bal_acc": 0.3 + 0.04 * e, "val_bal_acc": 0.3 + 0.02 * e, "val_auc": 0.6 + 0.01 * e,
                         "lr": 1e-3, "seconds": 1.0})


def test_values_slopes_and_gaps_are_exact_on_linear_curves() -> None:
    table = dynamics_table(history(), ranges=[(1, 6), (6, 12)])
    row = table.loc["loss: train"]
    assert row["initial"] == pytest.approx(1.9) and row["final"] == pytest.approx(0.8)
    assert row["change"] == pytest.approx(-1.1) and row["% change"] == pytest.approx(-1.1 / 1.9 * 100)
    assert row["slope 1–6"] == pytest.approx(-0.1) and row["slope 6–12"] == pytest.approx(-0.1)
    assert row["best"] == pytest.approx(0.8) and row["best epoch"] == 12
    gap = table.loc["balanced accuracy: gap train − val"]
    assert gap["final"] == pytest.approx(0.24) and gap["slope 1–6"] == pytest.approx(0.02)
    assert table.loc["macro AUC: validation", "slope 6–12"] == pytest.approx(0.01)
    assert overfitting_gap(history()) == pytest.approx({"loss": -0.6, "balanced accuracy": 0.24})


def test_default_ranges_cover_all_epochs() -> None:
    assert default_ranges(40) == [(1, 14), (14, 27), (27, 40)]
    assert default_ranges(3) == [(1, 3)]
    assert default_ranges(1) == [(1, 1)]
    table = dynamics_table(history(1))  # one epoch: values, no slopes
    assert np.isnan(table.loc["loss: train", "slope 1–1"])


def test_missing_history_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match=r"history\.csv"):
        run_dynamics(tmp_path)
    with pytest.raises(ValueError, match="epoch"):
        dynamics_table(pd.DataFrame({"train_loss": [1.0]}))
