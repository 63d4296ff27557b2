"""``lesionlab train --refit RUN``: the same recipe on training + validation lesions, calibrated by its sibling."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from lesionlab.cli import main
from lesionlab.config import DataConfig
from lesionlab.data.prepare import original_split, with_validation_in_training
from lesionlab.engine.evaluate import SeenDataError, evaluate_run
from tests.conftest import TINY, make_prepared


def _common(folder: Path, cache: Path) -> list[str]:
    return [*TINY, "data.dataset=folder", f"data.image_dir={folder}", f"data.cache_dir={cache}", "train.epochs=2",
            "train.batch_size=8", "train.trainer.precision=32-true", "train.trainer.accelerator=cpu",
            "train.optimizer.lr=0.01"]


def _run(out: Path, prefix: str) -> Path:
    (run,) = [p for p in out.iterdir() if p.is_dir() and p.name.startswith(prefix)]
    return run


@pytest.fixture(scope="module")
def sibling_and_refit(image_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    out, cache = tmp_path_factory.mktemp("runs"), tmp_path_factory.mktemp("cache")
    assert main(["-q", "train", "--output-dir", str(out), "name=sib", *_common(image_folder, cache)]) == 0
    sibling = _run(out, "sib-")
    assert main(["-q", "train", "--refit", str(sibling), f"output_dir={out}"]) == 0
    return sibling, _run(out, "sib-refit-"), cache


def test_validation_lesions_join_training_and_the_original_split_is_kept() -> None:
    data = make_prepared([5] * 7)
    refit = with_validation_in_training(data)
    assert len(refit.indices("val")) == 0
    assert len(refit.indices("train")) == len(data.indices("train")) + len(data.indices("val"))
    np.testing.assert_array_equal(refit.indices("test"), data.indices("test"))
    back = original_split(refit)
    assert back.table["split"].tolist() == data.table["split"].tolist()
    assert original_split(data) is data


def test_refit_trains_on_train_and_val_and_ships_the_siblings_calibration(sibling_and_refit) -> None:
    sibling, refit, _ = sibling_and_refit
    before = pd.read_csv(sibling / "splits.csv")["split"].value_counts()
    after = pd.read_csv(refit / "splits.csv")["split"].value_counts()
    assert "val" not in after and after["train"] == before["train"] + before["val"]
    assert after["test"] == before["test"]
    theirs = pd.read_csv(sibling / "splits.csv").query("split == 'test'")["image_id"].tolist()
    ours = pd.read_csv(refit / "splits.csv").query("split == 'test'")["image_id"].tolist()
    assert sorted(theirs) == sorted(ours)
    a = torch.load(sibling / "model.pt", weights_only=False)
    b = torch.load(refit / "model.pt", weights_only=False)
    for key in ("temperature", "thresholds", "unsure_threshold", "tta", "image_size"):
        assert b["preprocessing"][key] == a["preprocessing"][key]
    assert b["extra"]["train_on_val"] is True and b["extra"]["calibrated_by"] == str(sibling.resolve())
    assert b["extra"]["best_epoch"] == 2  # the last epoch ships: nothing is left to choose another
    history = pd.read_csv(refit / "history.csv")
    assert len(history) == 2 and history["val_bal_acc"].isna().all()
    assert any(not torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])  # trained anew
    assert (refit / "metrics.json").is_file()  # the one look at the held-out test split


def test_evaluating_a_refit_refuses_its_validation_images_too(sibling_and_refit, image_folder: Path) -> None:
    _, refit, cache = sibling_and_refit
    data = DataConfig(dataset="folder", image_dir=str(image_folder), image_size=16, cache_dir=str(cache))
    split = pd.read_csv(refit / "splits.csv")["split"]
    with pytest.raises(SeenDataError, match=f"{int((split != 'test').sum())} of {len(split)} images were used"):
        evaluate_run(refit, data, progress=False)
    result = evaluate_run(refit, data, out_dir=refit / "eval", exclude_seen=True, progress=False)
    assert result.excluded == int((split != "test").sum())
    assert result.metrics["n"] == int((split == "test").sum())


@pytest.mark.parametrize(("extra", "message"), [
    (["train.fit_on=train+val"], "train.calibration_from"),
    (["train.calibration_from=x"], "only applies with train.fit_on=train\\+val"),
    (["train.fit_on=everything"], "train.fit_on must be one of"),
    (["train.fit_on=train+val", "train.calibration_from=x", "train.schedule.name=plateau"],
     "no validation metric for train.schedule.name=plateau"),
])
def test_refit_settings_are_checked_before_anything_runs(extra: list[str], message: str, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-q", "train", "--output-dir", str(tmp_path), *extra]) == 2
    assert message.replace("\\", "") in capsys.readouterr().err.replace("\\", "")
    assert not list(tmp_path.iterdir())


def test_a_sibling_that_does_not_match_is_refused(sibling_and_refit, image_folder: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    sibling, refit, cache = sibling_and_refit
    common = [*_common(image_folder, cache), "train.fit_on=train+val", "train.patience=0"]
    cases = [
        ([f"train.calibration_from={sibling}", "data.image_size=24"], "image_size=16"),
        ([f"train.calibration_from={refit}"], "had no validation split"),
        ([f"train.calibration_from={sibling}", "data.split.seed=5"], "held out other test images"),
        ([f"train.calibration_from={tmp_path / 'missing'}"], "no model.pt there"),
    ]
    for extra, message in cases:
        out = tmp_path / f"out{len(message)}"
        assert main(["-q", "train", "--output-dir", str(out), *common, *extra]) == 2
        assert message in capsys.readouterr().err
        assert not out.exists() or not list(out.iterdir())  # a refused start leaves no run directory


def test_refit_reads_the_runs_own_config(sibling_and_refit, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    sibling, _, _ = sibling_and_refit
    assert main(["-q", "train", "--refit", str(sibling), "--config", "configs/default.yaml"]) == 2
    assert "drop --config" in capsys.readouterr().err
    assert main(["-q", "train", "--refit", str(tmp_path)]) == 2
    assert "not a LesionLab run directory" in capsys.readouterr().err


def test_post_hoc_commands_see_the_refit_split(sibling_and_refit, capsys: pytest.CaptureFixture[str]) -> None:
    sibling, refit, _ = sibling_and_refit
    assert main(["-q", "calibrate", str(refit)]) == 2  # its validation lesions trained it: nothing to fit on
    assert "a refit trained on it" in capsys.readouterr().err
    before = torch.load(refit / "model.pt", weights_only=False)["ood"]
    assert main(["-q", "ood", "fit", str(refit), "--method", "knn-compact"]) == 0
    after = torch.load(refit / "model.pt", weights_only=False)["ood"]
    assert before["method"] == "knn" and after["method"] == "knn-compact"
    split = pd.read_csv(sibling / "splits.csv")["split"]  # the original split: fitted on train, thresholded on val
    assert after["fitted_on"]["train_images"] == int((split == "train").sum())
    assert after["fitted_on"]["val_images"] == int((split == "val").sum())
    assert "this refit also trained on those validation images" in after["rule"]


def test_ood_eval_and_cv_handle_refits(sibling_and_refit, image_folder: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    _, refit, cache = sibling_and_refit
    assert main(["-q", "ood", "eval", str(refit), "--methods", "knn", "--out", str(tmp_path / "ood")]) == 0  # fits on
    assert (tmp_path / "ood").is_dir()  # the original training lesions, thresholds on the original validation ones
    common = [*_common(image_folder, cache), "train.fit_on=train+val", f"train.calibration_from={refit}"]
    assert main(["-q", "cv", "--folds", "2", "--output-dir", str(tmp_path / "cv"), *common]) == 2
    assert "train.fit_on must be train" in capsys.readouterr().err


def test_train_refit_runs_the_sibling_then_the_refit_as_one_job(image_folder: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "runs"
    assert main(["-q", "train", "--output-dir", str(out), "name=job", "train.refit=true",
                 *_common(image_folder, tmp_path / "cache")]) == 0
    sibling, refit = _run(out, "job-2"), _run(out, "job-refit-")
    assert (sibling / "val_metrics.json").is_file() and not (sibling / "metrics.json").is_file()  # test untouched
    assert (refit / "metrics.json").is_file()  # the refit is the one evaluated on the test split
    blob = torch.load(refit / "model.pt", weights_only=False)
    assert blob["extra"]["calibrated_by"] == str(sibling.resolve()) and blob["extra"]["train_on_val"] is True
    printed = capsys.readouterr().out
    assert "train-only run (calibrates the refit)" in printed
    assert f"report: {(refit / 'report.html').resolve()}" in printed


@pytest.mark.parametrize(("overrides", "message"), [
    (["train.refit=true", "train.fit_on=train+val", "train.calibration_from=x"], "starts from a train-only run"),
    (["train.refit=true", "data.split.folds=3"], "asks for a cross-validation ensemble"),
    (["train.refit=true", "data.split.val=0"], "needs a validation split"),
    (["train.refit=true", "train.schedule.name=plateau"], "train.schedule.name=plateau"),
    (["train.refit=true", "train.trainer.devices=2"], "runs its two fits in one process"),
    (["train.refit=true", "train.refit_ensemble=true", "model.metadata=true"], "cannot feed patient metadata"),
])
def test_refit_job_refuses_what_it_cannot_refit(overrides: list[str], message: str, tmp_path: Path, capsys) -> None:
    assert main(["-q", "train", "--output-dir", str(tmp_path), *overrides]) == 2
    assert message in capsys.readouterr().err and not any(tmp_path.iterdir())


def test_refit_ensemble_ships_both_fits_as_one_model_scored_once(image_folder: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "runs"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["-q", "train", "--output-dir", str(out), "name=job", "train.refit=true",
                     "train.refit_ensemble=true", *_common(image_folder, tmp_path / "cache")]) == 0
    assert not [w for w in caught if "val_dataloader" in str(w.message)]  # the refit's missing validation is wanted
    sibling, refit, ensemble = _run(out, "job-2"), _run(out, "job-refit-"), _run(out, "job-ensemble-")
    assert not (sibling / "metrics.json").is_file() and not (refit / "metrics.json").is_file()  # neither alone
    manifest = json.loads((ensemble / "ensemble.json").read_text())
    assert manifest["members"] == [f"../{sibling.name}/model.pt", f"../{refit.name}/model.pt"]  # movable together
    refit_prep = torch.load(refit / "model.pt", weights_only=False)["preprocessing"]
    assert manifest["thresholds"] == refit_prep["thresholds"]  # the train-only run's, chosen on its validation split
    assert manifest["weights"] == [0.5, 0.5]
    printed = capsys.readouterr().out
    assert f"report: {(ensemble / 'report.html').resolve()}" in printed and "ensemble of both fits" in printed

    # what was scored is the average of the two members' calibrated probabilities on the test split
    predictions = pd.read_csv(ensemble / "predictions.csv", dtype={"image_id": str})
    split = pd.read_csv(refit / "splits.csv", dtype={"image_id": str})
    assert sorted(predictions["image_id"]) == sorted(split.loc[split["split"] == "test", "image_id"])
    data = DataConfig(dataset="folder", image_dir=str(image_folder), image_size=16, cache_dir=str(tmp_path / "cache"))
    members = [evaluate_run(m, data, out_dir=tmp_path / f"eval-{m.name}", exclude_seen=True, progress=False)
               for m in (sibling, refit)]
    member_probs = [pd.read_csv(r.directory / "predictions.csv", dtype={"image_id": str}).set_index("image_id")
                    for r in members]
    classes = [c for c in member_probs[0].columns if c.startswith("p_")]
    mean = (member_probs[0][classes] + member_probs[1][classes]) / 2
    np.testing.assert_allclose(predictions.set_index("image_id").loc[mean.index, classes], mean, atol=1e-5)
    with pytest.raises(SeenDataError, match="were used to train or validate"):
        evaluate_run(ensemble, data, progress=False)  # the refit trained on the validation lesions too

    # a killed refit resumed on its own (`train --resume REFIT`) still ends with the job's ensemble
    from lesionlab.config import load_run_config
    from lesionlab.engine.workflow import resumed_refit
    from lesionlab.runs import TrainResult

    job = resumed_refit(TrainResult.from_directory(refit), load_run_config(refit / "config.yaml"))
    assert job is not None and job.ensemble.run.root != ensemble and job.ensemble.run.root.name.startswith("job-ens")
    assert job.ensemble.metrics["balanced_accuracy"] == pytest.approx(
        json.loads((ensemble / "metrics.json").read_text())["balanced_accuracy"])
    assert resumed_refit(TrainResult.from_directory(sibling), load_run_config(sibling / "config.yaml")) is None


def test_fit_ood_on_a_validation_only_run_leaves_its_test_split_unscored(sibling_and_refit, tmp_path: Path,
                                                                        capsys) -> None:
    sibling, _, _ = sibling_and_refit
    import shutil

    run = tmp_path / "validation-only"
    shutil.copytree(sibling, run)
    (run / "metrics.json").unlink(missing_ok=True)  # what eval.test=false leaves: no test figures
    assert main(["ood", "fit", str(run), "--method", "knn"]) == 0
    assert "test split not scored" in capsys.readouterr().out
    assert json.loads((run / "ood.json").read_text())["test_images"] == 0
