"""End to end on real images: ``cv`` (2 folds, 1 epoch), then ``evaluate``/``predict`` on the ensemble and the
``calibrate``, ``explain``, ``robustness`` and ``compare`` commands on its fold runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lesionlab.cli import main
from lesionlab.models.checkpoint import load_model

pytestmark = pytest.mark.slow


def _ids(splits: pd.DataFrame, *names: str) -> set[str]:
    return set(splits.loc[splits["split"].isin(names), "image_id"].astype(str))


def test_cv_holds_out_one_test_split_that_no_fold_trained_or_validated_on(cv_dir: Path) -> None:
    root = pd.read_csv(cv_dir / "splits.csv", dtype={"image_id": str})
    test = _ids(root, "test")
    assert test
    for k in (0, 1):
        fold = pd.read_csv(cv_dir / f"fold-{k}" / "splits.csv", dtype={"image_id": str})
        assert _ids(fold, "test") == test
        assert not _ids(fold, "train", "val") & test
        assert _ids(fold, "val") == set(root.loc[(root["split"] != "test") & (root["fold"] == k), "image_id"])
        lesions = fold.groupby("lesion_id")["split"].nunique()
        assert (lesions == 1).all()
    assert set(pd.read_csv(cv_dir / "predictions.csv", dtype={"image_id": str})["image_id"]) == test
    manifest = json.loads((cv_dir / "ensemble.json").read_text())
    assert manifest["members"] == ["fold-0/model.pt", "fold-1/model.pt"]
    assert set(manifest["thresholds"]) <= {"mel", "bcc"}
    summary = pd.read_csv(cv_dir / "cv_summary.csv", index_col=0)
    assert {"ensemble", "ensemble + TTA (flips)", "single fold: mean", "single fold: std"} <= set(summary.index)
    assert {"balanced_accuracy", "auc_macro", "top2_accuracy", "top3_accuracy", "ece_before", "ece_after"} <= set(
        summary.columns)
    assert json.loads((cv_dir / "cv.json").read_text())["artifact_check_max_abs_diff"] < 1e-4
    metrics = json.loads((cv_dir / "metrics.json").read_text())
    assert metrics["balanced_accuracy"] == pytest.approx(summary.loc["ensemble + TTA (flips)", "balanced_accuracy"])


def test_fold_thresholds_reach_their_specificity_on_validation(cv_dir: Path) -> None:
    table = pd.read_csv(cv_dir / "fold-0" / "operating_points.csv")
    rows = table[table["criterion"].str.startswith("sensitivity @") & table["threshold"].notna()
                 & table["val_specificity"].notna()]
    assert len(rows) > 0
    for row in rows.itertuples():
        target = float(row.criterion.split("≥ ")[1].rstrip("%")) / 100
        assert row.val_specificity >= target, row


def test_evaluate_and_predict_accept_the_ensemble_like_a_run(cv_dir: Path, real_csv_dataset: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    data = ["--dataset", "csv", "--csv", str(real_csv_dataset / "labels.csv")]
    assert main(["-q", "evaluate", str(cv_dir), *data, "--out", str(tmp_path / "e0")]) == 2
    assert "used to train or validate" in capsys.readouterr().err
    assert main(["-q", "evaluate", str(cv_dir), *data, "--exclude-seen", "--out", str(tmp_path / "e1")]) == 0
    got = json.loads((tmp_path / "e1" / "metrics.json").read_text())
    own = json.loads((cv_dir / "metrics.json").read_text())
    assert got["n"] == own["n"] and got["balanced_accuracy"] == pytest.approx(own["balanced_accuracy"], abs=1e-6)
    image = next((real_csv_dataset / "images").glob("*.jpg"))
    capsys.readouterr()
    assert main(["-q", "predict", str(cv_dir), str(image), "--format", "json"]) == 0
    (result,) = json.loads(capsys.readouterr().out)
    assert abs(sum(result["probabilities"].values()) - 1) < 1e-4


def test_calibrate_explain_robustness_compare_commands(cv_dir: Path, ham_masks_dir: Path, real_csv_dataset: Path,
                                                       tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fold = cv_dir / "fold-0"
    assert main(["-q", "calibrate", str(fold), "--sensitivity", "0.8"]) == 0
    _, prep = load_model(fold / "model.pt")
    cal = json.loads((fold / "calibration.json").read_text())
    assert prep.temperature == pytest.approx(cal["temperature"]) and "refitted" in cal["note"]
    assert main(["-q", "calibrate", str(cv_dir)]) == 2  # ensembles keep their members' temperatures
    assert "ensemble" in capsys.readouterr().err

    assert main(["-q", "explain", str(fold), "--max-images", "7", "--masks", str(ham_masks_dir),
                 "--out", str(tmp_path / "x")]) == 0
    by_class = pd.read_csv(tmp_path / "x" / "cam_in_lesion.csv", index_col=0)
    scores = by_class["CAM in lesion"].dropna()
    assert len(scores) > 0 and ((scores >= 0) & (scores <= 1)).all()
    assert (tmp_path / "x" / "figures" / "gradcam_gallery.png").is_file()
    image = next((real_csv_dataset / "images").glob("*.jpg"))
    assert main(["-q", "explain", str(fold), str(image), "--method", "gradcam++", "--masks", str(ham_masks_dir),
                 "--out", str(tmp_path / "y")]) == 0
    assert (tmp_path / "y" / f"{image.stem}_gradcam++.png").is_file()
    assert pd.read_csv(tmp_path / "y" / "explanations.csv")["cam_in_lesion"].between(0, 1).all()

    assert main(["-q", "robustness", str(fold), "--corruptions", "black_corners,jpeg", "--severities", "1,5",
                 "--out", str(tmp_path / "r")]) == 0
    table = pd.read_csv(tmp_path / "r" / "robustness.csv", index_col=0)
    assert list(table.index) == ["black_corners", "jpeg"] and {"1", "5", "relative to clean"} <= set(table.columns)
    # without --tta the run's own eval.tta (flips, see cv_dir); an explicit --tta wins
    assert json.loads((tmp_path / "r" / "robustness.json").read_text())["tta"] == "flips"
    assert main(["-q", "robustness", str(fold), "--corruptions", "jpeg", "--severities", "1", "--tta", "none",
                 "--out", str(tmp_path / "r1")]) == 0
    assert json.loads((tmp_path / "r1" / "robustness.json").read_text())["tta"] == "none"
    assert main(["-q", "robustness", str(fold), "--severities", "9"]) == 2

    assert main(["-q", "compare", str(cv_dir / "fold-0"), str(cv_dir / "fold-1"), str(cv_dir),
                 "--out", str(tmp_path / "c")]) == 0
    compared = pd.read_csv(tmp_path / "c" / "compare.csv", index_col=0)
    assert len(compared) == 3 and np.isfinite(compared["balanced accuracy"]).all()
    assert compared["bal. acc. 95% CI"].str.match(r"^0\.\d{3} – [01]\.\d{3}$").all()  # lesion-level bootstrap
    summary = pd.read_csv(cv_dir / "cv_summary.csv", index_col=0)
    ensemble = summary.loc[summary.index.str.startswith("ensemble")]
    assert (ensemble["balanced_accuracy_ci_low"] <= ensemble["balanced_accuracy"]).all()
    assert (ensemble["balanced_accuracy"] <= ensemble["balanced_accuracy_ci_high"]).all()
    assert "Confidence intervals (95 %)" in (cv_dir / "report.html").read_text()
    assert "Training dynamics: fold-0" in (tmp_path / "c" / "report.html").read_text()
