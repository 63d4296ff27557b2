"""``lesionlab shift`` on a real model: PH2's folder against the model's unseen HAM10000 images."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lesionlab.cli import main


@pytest.mark.slow
def test_shift_command_writes_the_three_figures(serving_run: Path, shared_data: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["-q", "shift", str(serving_run), str(shared_data / "ph2" / "images_half"), "--data-root",
                 str(shared_data), "--max-images", "150", "--permutations", "50", "--out", str(tmp_path)])
    assert code == 0  # 150 of PH2's 200 images: the cap holds; the stratified reference subsample of ~9,600 unseen
    (summary,) = json.loads((tmp_path / "shift.json").read_text())  # images needs ~len/150 folds (40: ~4 min)
    assert summary["n_target"] == 150 and summary["n_reference"] >= 120
    assert 0 < summary["p_value"] <= 1 and 0 <= summary["mix_distance"] <= 1
    assert abs(sum(summary["predicted_mix"].values()) - 1) < 1e-9
    assert "MMD²" in capsys.readouterr().out


def test_shift_refuses_an_unknown_target_before_loading(serving_run: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["shift", str(serving_run), "ph3"]) == 2
    assert "ph3" in capsys.readouterr().err
