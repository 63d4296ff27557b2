"""The triage task: ``task: triage`` selects the priority taxonomy, reports lead with per-priority sensitivity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lesionlab.config import ConfigError, load_config
from lesionlab.evaluation.metrics import classification_metrics
from lesionlab.reports.html import Report
from lesionlab.reports.triage_section import add_priority_section, is_triage, missed_urgent, priority_table


def test_task_triage_sets_the_taxonomy() -> None:
    assert load_config(None, ["task=triage"]).data.taxonomy == "triage"
    assert load_config(None, ["task=triage", "data.taxonomy=triage"]).data.taxonomy == "triage"
    assert load_config(None, []).task == "diagnosis"
    with pytest.raises(ConfigError, match="contradicts"):
        load_config(None, ["task=triage", "data.taxonomy=ham7"])
    with pytest.raises(ConfigError, match="task must be one of diagnosis, triage"):
        load_config(None, ["task=segmentation"])


def _metrics() -> dict:
    y = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
    pred = np.array([0, 0, 2, 1, 1, 1, 0, 2, 2, 2])  # one P1 triaged as P3, one as P2
    return classification_metrics(y, np.eye(3)[pred], ["P1", "P2", "P3"])


def test_priority_table_and_missed_urgent() -> None:
    m = _metrics()
    table = priority_table(m)
    assert list(table.index) == ["P1", "P2", "P3"]
    assert table.loc["P1", "sensitivity"] == pytest.approx(0.5)
    assert table.loc["P2", "sensitivity"] == pytest.approx(2 / 3)
    assert table.loc["P3", "sensitivity"] == pytest.approx(1.0)
    assert table.loc["P1", "support"] == 4 and table.loc["P1", "priority"].startswith("malignant")
    assert missed_urgent(m) == (1, 4)


def test_section_only_for_triage_models(tmp_path: Path) -> None:
    report = Report("t")
    add_priority_section(report, _metrics())
    assert report.sections[0][1] == "Triage: sensitivity per priority"
    assert "<b>1 of 4</b>" in report.sections[0][2]
    other = Report("t")
    y = np.array([0, 1, 1])
    add_priority_section(other, classification_metrics(y, np.eye(2)[y], ["mel", "nv"]))
    assert not other.sections
    assert is_triage(("P1", "P2", "P3")) and not is_triage(("mel", "nv"))
