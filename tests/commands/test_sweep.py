"""``lesionlab sweep`` / ``ablate`` / ``augment-preview`` through ``main([...])``, on a few hundred real images."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from lesionlab.cli import main
from lesionlab.config import ConfigError
from tests.conftest import TINY

TINY = [*TINY, "data.max_samples=400", "train.batch_size=32"]


@pytest.mark.parametrize("command", ["sweep", "ablate", "augment-preview"])
def test_help(command: str, capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "example" in out
    if command == "ablate":
        assert "model.drop_rate=0" in out  # the factor registry's meanings are listed


@pytest.mark.parametrize(("argv", "message"), [
    (["sweep", "--grid", "optimizer=adam,adamx"], "Unknown optimizer 'adamx'"),
    (["sweep", "--grid", "learning_rate=1e-3"], "Unknown grid key"),
    (["ablate", "--factors", "focal"], "not part of the full configuration"),
    (["ablate", "--factors", "dropot"], "Did you mean 'dropout'"),
    (["sweep", "train.sampling.sampler=weighted", "--grid", "lr=1e-3"], "Valid samplers: balanced, random"),
    (["cv", "configs/default.yaml"], "give the config file as --config configs/default.yaml"),
    (["train", "train.lr=0.1"], "Unknown config key(s) ['lr'] in train"),
    (["train", "train.loss.name=nope"], "train.loss.name: Unknown loss 'nope'"),
    (["train", "eval.tta=nope"], "eval.tta:"),
    (["cv", "train.optimizer.name=adamx"], "Did you mean 'adam'"),
    (["leakage-audit", "model.head=nope"], "model.head: Unknown head"),
    (["augment-preview", "train.augmentation.preset=nope"], "Unknown augmentation"),
    (["pretrain", "vae", "train.schedule.name=nope"], "train.schedule.name: Unknown"),
])
def test_user_errors_exit_2_with_one_line(argv: list[str], message: str, capsys, tmp_path) -> None:
    assert main(["-q", *argv, "--output-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("error:")
    assert not any(tmp_path.iterdir())  # nothing was trained or written


# Both real-data tests use the session's image cache ($LESIONLAB_CACHE, set by tests/conftest.py): built once.
def test_augment_preview_writes_a_grid(shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code = main(["-q", "augment-preview", "--data-root", str(shared_data), "--output-dir", "out", "--images", "4",
                 "--views", "3", *TINY, "train.augmentation.preset=heavy",
                 "train.augmentation.params={erase_p: 1.0}"])
    assert code == 0
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # under the output directory, nothing else in the cwd
    (out,) = (tmp_path / "out").glob("augment-preview-*.png")
    with Image.open(out) as img:
        assert img.width > 300 and img.height > 300


@pytest.mark.slow
def test_sweep_over_smote_spaces_on_real_data(shared_data: Path, tmp_path: Path) -> None:
    """Two real runs (pixel- and feature-space SMOTE after under-sampling); resampling stays in the training split."""
    code = main(["-q", "sweep", "--data-root", str(shared_data), "--output-dir", str(tmp_path),
                 *TINY, "train.sampling.undersample_cap=20", "train.sampling.oversample=smote",
                 "train.sampling.smote_k=3", "--grid", "smote_space=pixel,feature"])
    assert code == 0
    (sweep,) = list(tmp_path.iterdir())
    for name in ("results.csv", "results.md", "report.html", "figures/val_curves.png"):
        assert (sweep / name).is_file(), name
    table = pd.read_csv(sweep / "results.csv", index_col=0)
    assert list(table.index) == ["smote_space=pixel", "smote_space=feature"]
    for run in table["run"]:
        root = sweep / run
        counts = pd.read_csv(root / "resampling.csv", index_col=0).drop(index="total")
        assert (counts["kept"] <= 20).all() and (counts["total"] == counts["total"].max()).all()
        assert counts["synthetic"].sum() > 0
        splits = pd.read_csv(root / "splits.csv")
        preds = pd.read_csv(root / "predictions.csv")
        assert set(preds["image_id"]) == set(splits.loc[splits["split"] == "test", "image_id"])  # test = held out
        assert (counts["original"].sum()) == (splits["split"] == "train").sum()  # counted from the train split only
        assert "Resampling" in (root / "report.html").read_text()
    assert (sweep / table["run"].iloc[0] / "synthetic" / "images.npy").is_file()  # pixel space: images to look at
    assert not (sweep / table["run"].iloc[1] / "synthetic").exists()  # feature space: no images


@pytest.mark.parametrize(("override", "valid"), [
    ("train.loss.name=focall", "ce, focal"),
    ("train.loss.class_weights=sqrt", "effective, inverse, none"),
    ("train.sampling.sampler=weighted", "balanced, random"),
    ("train.sampling.oversample=adasyn", "duplicate, none, smote"),
    ("train.augmentation.preset=strong", "heavy, light, none, randaugment, standard, trivial"),
    ("train.optimizer.name=lamb", "adam, adamw, rmsprop, schedulefree-adamw, sgd"),
    ("train.schedule.name=step", "constant, cosine, onecycle, plateau"),
    ("train.stages=[{epochs: 1, lr: 0.1, unfreeze: top}]", "all, head, last"),
    ("eval.tta=d8", "d4, flips, none"),
    ("train.trainer.logger=wandb", "csv, mlflow, none, tensorboard"),
])
def test_train_rejects_unknown_component_names_before_any_work(override: str, valid: str, capsys,
                                                                tmp_path: Path) -> None:
    assert main(["-q", "train", "--output-dir", str(tmp_path), override]) == 2
    err = capsys.readouterr().err
    assert valid in err and len(err.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir())  # no run directory, no data loaded


def _stop_at_the_fold_count(monkeypatch) -> dict:
    """Replace the CV set-up by one that records its fold count and stops before any data are read."""
    import lesionlab.engine.cv as crossval

    seen: dict = {}

    def record(cfg, k):
        seen["folds"] = k
        raise crossval.ConfigError("stop here")

    monkeypatch.setattr(crossval, "_cv_config", record)
    return seen


@pytest.mark.parametrize(("argv", "folds"), [
    (["cv", "data.split.folds=3"], 3),  # the config's folds
    (["cv", "data.split.folds=3", "--folds", "4"], 4),  # --folds wins
    (["cv"], 5),  # neither: 5
])
def test_cv_takes_its_fold_count_from_the_config(argv: list[str], folds: int, monkeypatch, tmp_path) -> None:
    seen = _stop_at_the_fold_count(monkeypatch)
    assert main(["-q", *argv, "--output-dir", str(tmp_path)]) == 2
    assert seen["folds"] == folds


def test_train_refuses_the_cross_validation_route(monkeypatch, tmp_path, capsys) -> None:
    seen = _stop_at_the_fold_count(monkeypatch)
    assert main(["-q", "train", "data.split.folds=2", "--output-dir", str(tmp_path)]) == 2
    assert "train it with `lesionlab cv`" in capsys.readouterr().err
    assert not seen and not any(tmp_path.iterdir())  # refused before anything trained or was written


def test_train_with_a_val_fold_trains_that_fold_alone(monkeypatch, tmp_path) -> None:
    import lesionlab.engine.workflow as workflow

    seen = _stop_at_the_fold_count(monkeypatch)
    single = []

    def one_model(cfg, *args, **kwargs):
        single.append(cfg.data.split.val_fold)
        raise ConfigError("stop here")

    monkeypatch.setattr(workflow, "train", one_model)  # the workflow's one call of engine.train.train
    assert main(["-q", "train", "data.split.folds=2", "data.split.val_fold=1", "--output-dir", str(tmp_path)]) == 2
    assert single == [1] and not seen
