"""``lesionlab evaluate RUN --dataset ph2`` on a fixture PH2 release (a tiny untrained run; no training)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from lesionlab.cli import main
from tests.fixtures.external import write_ph2_official


def test_evaluate_on_ph2(tmp_path: Path, run_factory, capsys) -> None:
    write_ph2_official(tmp_path / "data" / "ph2")
    seen = pd.DataFrame({"image_id": ["ISIC_0000001"], "lesion_id": ["HAM_0000001"], "split": ["train"]})
    run = run_factory(splits=seen)
    out = tmp_path / "eval"
    assert main(["-q", "evaluate", str(run), "--dataset", "ph2", "--data-root", str(tmp_path / "data"),
                 "--out", str(out)]) == 0
    assert "6 images" in capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n"] == 6
    preds = pd.read_csv(out / "predictions.csv")
    assert sorted(preds["truth"].unique()) == ["mel", "nv"]
    assert (out / "report.html").is_file()
