"""The cross-validation table says which rows use test-time augmentation."""

from __future__ import annotations

import pandas as pd

from lesionlab.reports.cv_report import summary_display


def test_every_row_says_whether_it_uses_tta() -> None:
    rows = {"single fold: mean": [0.60], "single fold: std": [0.02], "single fold + TTA (d4): mean": [0.62],
            "single fold + TTA (d4): std": [0.03], "ensemble": [0.65], "ensemble + TTA (d4)": [0.67]}
    summary = pd.DataFrame(rows, index=["balanced_accuracy"]).T
    summary["balanced_accuracy_ci_low"], summary["balanced_accuracy_ci_high"] = 0.5, 0.7
    shown = summary_display(summary)
    assert list(shown.index) == ["single fold, no TTA (mean ± std)", "single fold + TTA (d4) (mean ± std)",
                                 "ensemble, no TTA", "ensemble + TTA (d4)"]
    assert shown.loc["single fold, no TTA (mean ± std)", "balanced accuracy"] == "0.6000 ± 0.0200"
    assert shown.loc["ensemble, no TTA", "balanced accuracy 95% CI"] == "0.5000 – 0.7000"
