"""Grid search and leave-one-out ablation: key resolution, one run per cell/variant, tables with the best marked."""

from __future__ import annotations

import pandas as pd
import pytest

from lesionlab.config import ConfigError, ExperimentConfig
from lesionlab.engine import train as runner
from lesionlab.engine.ablate import ablation_configs, run_ablation
from lesionlab.engine.ablate_factors import ABLATIONS, parse_factors
from lesionlab.engine.sweep import grid_cells, parse_grid, resolve_key, run_sweep
from lesionlab.engine.train import TrainResult
from lesionlab.registry import UnknownNameError
from lesionlab.reports.results_table import BEST_MARK, marked_frame
from lesionlab.runs import RunPaths

CLASSES = ("a", "b")


@pytest.fixture
def fake_train(monkeypatch):
    """Replace the real training with a deterministic function of the config (the logic under test is around it)."""
    calls: list[ExperimentConfig] = []

    def train(cfg: ExperimentConfig, run: RunPaths | None = None) -> TrainResult:
        calls.append(cfg)
        score = {"adam": 0.6, "sgd": 0.7, "rmsprop": 0.5}.get(cfg.train.optimizer.name, 0.4) + cfg.train.optimizer.lr
        score -= 0.1 * (cfg.train.augmentation.preset == "none") + 0.05 * (cfg.model.drop_rate == 0)
        pd.DataFrame({"epoch": [1, 2], "val_bal_acc": [score - 0.1, score], "val_loss": [1.0, 1.0 - score]}).to_csv(
            run.history, index=False)
        metrics = {"accuracy": score + 0.1, "balanced_accuracy": score, "auc_macro": 0.9,
                   "macro": {"precision": score, "recall": score, "f1": score - 0.01},
                   "per_class": {"a": {"recall": score}, "b": {"recall": 1 - score}}}
        return TrainResult(run, metrics, {"total": 1.0})

    monkeypatch.setattr(runner, "train", train)
    return calls


def test_resolve_keys() -> None:
    assert resolve_key("lr") == "train.optimizer.lr"
    assert resolve_key("optimizer") == "train.optimizer.name"
    assert resolve_key("backbone") == "model.backbone"
    assert resolve_key("image_size") == "data.image_size"
    assert resolve_key("data.split.seed") == "data.split.seed"
    with pytest.raises(ConfigError, match=r"Unknown grid key 'learning_rate'.*'lr'"):
        resolve_key("learning_rate")
    with pytest.raises(ConfigError, match="'lrr' is not one of"):
        resolve_key("train.lrr")


def test_grid_cells() -> None:
    axes = parse_grid(["optimizer=adam,sgd,rmsprop", "lr=1e-2,1e-3"])
    cells = grid_cells(axes)
    assert len(cells) == 6 and cells[0] == {"train.optimizer.name": "adam", "train.optimizer.lr": "1e-2"}
    assert {c["train.optimizer.name"] for c in cells} == {"adam", "sgd", "rmsprop"}
    for bad in (["lr"], ["lr="], ["lr=1,2", "train.optimizer.lr=3"]):
        with pytest.raises(ConfigError):
            parse_grid(bad)


def test_sweep_runs_every_cell_and_ranks_by_validation(fake_train, tmp_path) -> None:
    result = run_sweep(None, ["optimizer=adam,sgd,rmsprop", "lr=1e-2,1e-3"], ["data.image_size=16"],
                       output_dir=tmp_path)
    assert len(fake_train) == 6
    assert {(c.train.optimizer.name, c.train.optimizer.lr) for c in fake_train} == {
        (o, lr) for o in ("adam", "sgd", "rmsprop") for lr in (1e-2, 1e-3)}
    assert all(c.data.image_size == 16 for c in fake_train)
    assert result.best == "optimizer=sgd_lr=1e-2"
    table = pd.read_csv(result.directory / "results.csv", index_col=0)
    assert len(table) == 6 and table.loc["optimizer=sgd_lr=1e-2", "best_val_bal_acc"] == pytest.approx(0.71)
    md = (result.directory / "results.md").read_text()
    assert f"0.7100 {BEST_MARK}" in md and md.count("|") > 6 * 8
    html = (result.directory / "report.html").read_text()
    assert "Validation curves" in html and "data:image/png;base64," in html
    assert (result.directory / "figures" / "val_curves.png").stat().st_size > 1000
    assert len([p for p in result.directory.iterdir() if p.is_dir() and p.name.startswith("optimizer=")]) == 6


def test_sweep_checks_every_cell_before_training(fake_train, tmp_path) -> None:
    with pytest.raises(UnknownNameError, match="adam, adamw"):
        run_sweep(None, ["optimizer=adam,adamx"], output_dir=tmp_path)
    assert fake_train == []  # nothing trained: the typo in the second cell was caught first
    with pytest.raises(ConfigError, match=r"train\.optimizer\.lr must be positive"):
        run_sweep(None, ["lr=1e-3,-1"], output_dir=tmp_path)


def test_ablation_variants() -> None:
    variants = dict(ablation_configs(None, ["dropout", "augment", "class_weights", "focal"],
                                     ["train.loss.name=focal", "train.augmentation.preset=standard"]))
    assert list(variants) == ["full", "-dropout", "-augment", "-class_weights", "-focal"]
    full = variants["full"]
    assert (full.model.drop_rate, full.train.augmentation.preset, full.train.loss.class_weights,
            full.train.loss.name) == (0.2, "standard", "inverse", "focal")
    assert variants["-dropout"].model.drop_rate == 0 and variants["-dropout"].train.loss.name == "focal"
    assert variants["-augment"].train.augmentation.preset == "none" and variants["-augment"].model.drop_rate == 0.2
    assert variants["-class_weights"].train.loss.class_weights == "none"
    assert variants["-focal"].train.loss.name == "ce" and variants["-focal"].train.loss.class_weights == "inverse"


def test_ablation_rejects_absent_or_unknown_factors() -> None:
    with pytest.raises(ConfigError, match=r"'focal'.*not part of the full configuration"):
        ablation_configs(None, ["focal"])  # the default loss is already cross-entropy
    with pytest.raises(UnknownNameError, match="augment, class_weights"):
        parse_factors("dropout,augmentation")
    with pytest.raises(ConfigError, match="twice"):
        parse_factors("dropout,dropout")
    assert "gap" in ABLATIONS and "dropout" in ABLATIONS


def test_gap_factor_swaps_average_for_max_pooling() -> None:
    variants = dict(ablation_configs(None, ["gap"]))
    assert variants["full"].model.global_pool == "avg"
    assert variants["-gap"].model.global_pool == "max"
    assert variants["-gap"].train == variants["full"].train  # nothing else changes


def test_ablation_table_marks_the_best(fake_train, tmp_path) -> None:
    result = run_ablation(None, "dropout,augment", ["train.optimizer.name=sgd", "train.optimizer.lr=0.01"],
                          output_dir=tmp_path)
    assert [c.name for c in fake_train] == ["full", "without-dropout", "without-augment"]
    table = result.table
    assert list(table.index) == ["full", "− dropout", "− augment"]
    for col in ("accuracy", "balanced_accuracy", "macro_precision", "macro_recall", "macro_f1", "recall_a",
                "recall_b"):
        assert col in table
    assert table.loc["full", "balanced_accuracy"] == pytest.approx(0.71)
    assert table.loc["− augment", "balanced_accuracy"] == pytest.approx(0.61)
    md = (result.directory / "results.md").read_text()
    assert "| full | 0.8100 ★ | 0.7100 ★" in md
    assert "recall_b" in md and "0.3900 ★" in md and "0.2900 ★" not in md  # per-class recall b: −augment is best
    assert "model.drop_rate=0" in md  # what removing each factor means
    assert "★" in (result.directory / "report.html").read_text()


def test_marked_frame_handles_ties_nan_and_lower_is_better() -> None:
    frame = pd.DataFrame({"x": [0.5, 0.5, 0.1], "loss": [0.3, 0.2, float("nan")]}, index=["p", "q", "r"])
    shown = marked_frame(frame, ["x", "loss"], lower_is_better=["loss"])
    assert shown.loc["p", "x"].endswith(BEST_MARK) and shown.loc["q", "x"].endswith(BEST_MARK)
    assert shown.loc["q", "loss"].endswith(BEST_MARK) and shown.loc["r", "loss"] == "–"


def test_no_star_when_nothing_wins() -> None:
    frame = pd.DataFrame({"recall_df": [0.0, 0.0, 0.0], "x": [0.71004, 0.71001, 0.5], "y": [0.4, float("nan"), 0.4]},
                         index=["full", "-a", "-b"])
    shown = marked_frame(frame, ["recall_df", "x", "y"])
    assert not any(v.endswith(BEST_MARK) for v in shown["recall_df"])  # ties at 0.0000: no winner
    assert not any(v.endswith(BEST_MARK) for v in shown["y"])  # equal where defined
    assert [v.endswith(BEST_MARK) for v in shown["x"]] == [True, True, False]  # equal as shown (0.7100)
