"""``lesionlab study``: arms x seeds, resume, arm-output substitution, the results page and the summary table."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from lesionlab.cli import main
from lesionlab.config import ConfigError, load_config, load_typed_config
from lesionlab.config.study import STUDY_DIR, ArmConfig, StudyConfig, load_study
from lesionlab.engine.study import run as study_module
from lesionlab.engine.study.run import STUDY_KINDS, ArmKind, run_study
from lesionlab.engine.study.summary import BEGIN, write_summary
from lesionlab.reports.study_page import write_study_page

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def fake_kind(monkeypatch, tmp_path: Path):
    """A kind that 'trains' by writing metrics.json/history.csv whose values depend on the overrides."""
    calls: list[list[str]] = []

    def run(arm: ArmConfig, overrides: list[str]) -> dict[str, Path]:
        calls.append(overrides)
        seed = int(next(o for o in overrides if o.startswith("train.seed=")).split("=")[1])
        bal = 0.6 + 0.01 * seed + (0.05 if "model.drop_rate=0.5" in overrides else 0.0)
        out = tmp_path / "runs" / f"{arm.name}-{seed}"
        out.mkdir(parents=True)
        (out / "metrics.json").write_text(json.dumps({
            "balanced_accuracy": bal, "auc_macro": 0.9, "accuracy": 0.8,
            "ci95": {"balanced_accuracy": [bal - 0.05, bal + 0.05]}}))
        pd.DataFrame({"epoch": [1, 2], "train_bal_acc": [0.7, 0.9], "val_bal_acc": [0.6, bal]}).to_csv(
            out / "history.csv", index=False)
        return {arm.name: out}

    monkeypatch.setitem(STUDY_KINDS._items, "fake", ArmKind("", run))
    return calls


def _study(**kwargs) -> StudyConfig:
    arms = (ArmConfig(name="base", kind="fake"),
            ArmConfig(name="dropout", kind="fake", overrides=("model.drop_rate=0.5", "model.weights={arm:base}")))
    settings = dict(name="toy", title="Toy study", question="Does dropout help?", paper="Someone et al. 2020",
                    arms=arms, seeds=(0, 1), claims={"dropout": {"balanced_accuracy": 0.7}},
                    scales={"cpu": ["data.image_size=32"], "gpu": ["data.image_size=224"]},
                    setting={"cpu": "toy data, 32 px"}, headline={"label": "dropout", "metric": "balanced_accuracy"})
    return StudyConfig(**(settings | kwargs))


def test_arms_run_over_seeds_resume_and_use_earlier_arms(fake_kind, tmp_path: Path) -> None:
    study = _study()
    results = run_study(study, results_dir=tmp_path / "results", runs_dir=tmp_path / "runs")
    assert len(fake_kind) == 4 and len(results) == 4
    assert list(results["arm"]) == ["base", "base", "dropout", "dropout"]
    first = fake_kind[2]  # dropout, seed 0: scale overrides first, then the arm's, then seed, name and folder
    assert first[0] == "data.image_size=32" and "model.drop_rate=0.5" in first and "train.seed=0" in first
    assert f"model.weights={tmp_path / 'runs' / 'base-0'}" in first  # {arm:base} of the same seed
    row = results[(results["arm"] == "dropout") & (results["seed"] == 1)].iloc[0]
    assert row["balanced_accuracy"] == pytest.approx(0.66) and row["balanced_accuracy_lo"] == pytest.approx(0.61)
    assert row["gap_bal_acc"] == pytest.approx(0.9 - 0.66) and row["best_epoch"] == 2
    again = run_study(study, results_dir=tmp_path / "results", runs_dir=tmp_path / "runs")
    assert len(fake_kind) == 4 and len(again) == 4  # nothing re-runs
    grown = _study(seeds=(0, 1, 2))
    run_study(grown, results_dir=tmp_path / "results", runs_dir=tmp_path / "runs")
    assert len(fake_kind) == 6  # only seed 2 of both arms


def test_results_page_sets_paper_beside_ours_and_lists_what_is_missing(fake_kind, tmp_path: Path) -> None:
    study = _study()
    results = run_study(study, results_dir=tmp_path, runs_dir=tmp_path / "runs", only=["base"])
    page = write_study_page(study, results, tmp_path / "toy.md", scale="cpu", command="lesionlab study toy")
    text = page.read_text()
    assert "Does dropout help?" in text and "Someone et al. 2020" in text and "toy data, 32 px" in text
    assert "0.605 ± 0.007 (0.550–0.650)" in text  # mean ± sd over seeds 0/1, the (lower) median seed's interval
    assert "Not run yet: dropout (seed 0), dropout (seed 1)." in text
    assert (tmp_path / "toy.png").is_file()
    results = run_study(study, results_dir=tmp_path, runs_dir=tmp_path / "runs")
    (tmp_path / "toy-notes.md").write_text("## Discussion\nDropout helped here.")
    text = write_study_page(study, results, tmp_path / "toy.md", scale="cpu", command="x").read_text()
    assert "| dropout | 2 | 0.700 |" in text and "Dropout helped here." in text and "Not run yet" not in text


def test_summary_table_is_written_between_markers(fake_kind, tmp_path: Path) -> None:
    study = _study(verdict="agrees within the CI")
    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump({k: v for k, v in study.__dict__.items() if k != "arms"} | {
        "arms": [a.__dict__ | {"overrides": list(a.overrides)} for a in study.arms],
        "seeds": list(study.seeds)}))
    (tmp_path / "README.md").write_text("# Results\n\nIntro.\n")
    readme = write_summary([path], tmp_path)
    assert "pending" not in readme.read_text() and "not run yet" in readme.read_text()
    run_study(load_study(path), results_dir=tmp_path, runs_dir=tmp_path / "runs")
    text = write_summary([path], tmp_path).read_text()
    assert text.count(BEGIN) == 1 and "Intro." in text
    assert "0.655 ± 0.007 (0.600–0.700) (2 seeds)" in text and "agrees within the CI" in text


def test_bad_studies_fail_before_running(fake_kind, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="arm names repeat"):
        StudyConfig(name="x", title="", question="", paper="", arms=(ArmConfig("a"), ArmConfig("a")))
    with pytest.raises(ConfigError, match="no scale 'tpu'"):
        run_study(_study(), scale="tpu", results_dir=tmp_path, runs_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"--only \['nope'\]"):
        run_study(_study(), only=["nope"], results_dir=tmp_path, runs_dir=tmp_path)
    late = StudyConfig(name="late", title="", question="", paper="", seeds=(0,), arms=(
        ArmConfig("b", kind="fake", overrides=("model.weights={arm:a}",)), ArmConfig("a", kind="fake")))
    with pytest.raises(ConfigError, match="list it earlier"):
        run_study(late, results_dir=tmp_path, runs_dir=tmp_path)
    assert fake_kind == []
    with pytest.raises(ConfigError, match="no study 'nope'"):
        load_study("nope")


@pytest.mark.parametrize("path", sorted((ROOT / STUDY_DIR).glob("*.yaml")), ids=lambda p: p.stem)
def test_committed_studies_build_valid_configs(path: Path, monkeypatch) -> None:
    """Every arm of every study file resolves to a valid config at every scale (bad keys fail here, not at hour 3)."""
    from lesionlab.config.pretraining import ComparePretrainingConfig, PretrainConfig
    from lesionlab.training.validation import check_component_names

    monkeypatch.chdir(ROOT)
    study = load_study(path)
    done = pd.DataFrame({"arm": [a.name for a in study.arms], "seed": [study.seeds[0]] * len(study.arms),
                         "run_dir": ["/tmp/run"] * len(study.arms)})
    for scale in study.scales or {"cpu": []}:
        for arm in study.arms:
            overrides = study_module.arm_overrides(study, arm, scale, study.seeds[0], done, "/tmp/data", Path("/tmp"))
            if arm.kind == "pretrain":
                load_typed_config(PretrainConfig, arm.config, overrides)
            elif arm.kind == "compare-pretraining":
                load_typed_config(ComparePretrainingConfig, arm.config, overrides)
            else:
                check_component_names(load_config(arm.config, overrides))
    assert study.headline.get("label") in {lbl for lbl in _labels(study)}, "headline names no row of the study"


def _labels(study: StudyConfig) -> set[str]:
    labels = set()
    for arm in study.arms:
        labels.add(arm.name)
        labels.update(f"{arm.name}: {x}" for x in ("lesion-disjoint", "image-level", "single fold",
                                                  "ensemble", "vae", "imagenet-lite0", "random"))
    return labels | set(study.claims)


def test_a_real_study_runs_end_to_end(shared_data: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump({
        "name": "tiny", "title": "Tiny", "question": "Does it run?", "paper": "none", "seeds": [0],
        "scales": {"cpu": ["data.max_samples=150", "data.image_size=32", "train.epochs=1", "eval.gradcam_images=0",
                           "train.progress=false", "eval.ood=none", "eval.tta=none"]},
        "arms": [{"name": "scratch", "config": str(ROOT / "configs/scratch-baseline.yaml")}]}))
    assert main(["study", str(tmp_path / "tiny.yaml"), "--data-root", str(shared_data),
                 "--results-dir", str(tmp_path / "results")]) == 0
    rows = pd.read_csv(tmp_path / "results" / "tiny.csv")
    assert len(rows) == 1 and 0 <= rows["balanced_accuracy"].iloc[0] <= 1 and rows["minutes"].iloc[0] > 0
    assert rows["balanced_accuracy_lo"].iloc[0] <= rows["balanced_accuracy"].iloc[0]
    assert "| scratch | 1 |" in (tmp_path / "results" / "tiny.md").read_text()


def test_latency_arm_measures_each_backbone(tmp_path: Path) -> None:
    study = StudyConfig(name="speed", title="Speed", question="How fast?", paper="none", seeds=(0,),
                        metrics=("latency_ms", "params_m"),
                        arms=(ArmConfig("latency", kind="latency",
                                        options={"backbones": ["resnet10t", "mobilenetv3-small"], "image_size": 32,
                                                 "runs": 3}),))
    results = run_study(study, results_dir=tmp_path, runs_dir=tmp_path / "runs")
    assert list(results["label"]) == ["latency: resnet10t", "latency: mobilenetv3-small"]
    assert (results["latency_ms"] > 0).all()
    small, resnet = results.set_index("label")["params_m"].loc[["latency: mobilenetv3-small", "latency: resnet10t"]]
    assert 0.5 < small < resnet  # parameter counts of the real architectures, in millions
