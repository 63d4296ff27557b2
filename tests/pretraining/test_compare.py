"""compare-pretraining: identical recipes per arm, the VAE/test leakage check, the last-stage level, a real run."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import timm
import torch

from lesionlab.cli import main
from lesionlab.config import ConfigError, load_typed_config
from lesionlab.config.pretraining import ComparePretrainingConfig, EncoderArmConfig
from lesionlab.data.prepare import prepare_data
from lesionlab.data.splits import LeakageError
from lesionlab.engine.compare_pretraining import (
    VAERun,
    arm_experiment,
    assert_identical_recipes,
    check_vae_never_saw_test,
)
from lesionlab.registry import UnknownNameError
from lesionlab.training.unfreeze import UNFREEZE

PRESET = Path(__file__).resolve().parents[2] / "configs" / "compare-pretraining.yaml"


def _preset(*overrides: str) -> ComparePretrainingConfig:
    return load_typed_config(ComparePretrainingConfig, PRESET, list(overrides))


def test_preset_is_the_study_recipe() -> None:
    cfg = _preset()
    exp = cfg.experiment
    assert exp.task == "triage" and exp.data.taxonomy == "triage"
    assert (exp.model.head, exp.train.optimizer.name, exp.train.loss.name) == ("mlp", "schedulefree-adamw", "focal")
    assert [a.init for a in cfg.arms] == ["vae", "imagenet", "random"]


def test_arms_differ_only_in_the_encoder(vae_run: Path, tmp_path: Path) -> None:
    cfg = _preset(f"vae_run={vae_run}", "frozen_epochs=3", "finetune_epochs=2")
    vae = VAERun.open(vae_run)
    exps = {a.name: arm_experiment(cfg, a, vae, tmp_path) for a in cfg.arms}
    assert_identical_recipes(exps)
    assert exps["vae"].model.weights == str(vae_run / "encoder.safetensors")
    assert exps["vae"].model.backbone == exps["random"].model.backbone == "tiny-convnext"
    assert exps["imagenet-lite0"].model.pretrained == "imagenet"
    stages = exps["vae"].train.stages
    assert [(s.epochs, s.unfreeze) for s in stages] == [(3, "head"), (2, "last-block")]
    assert stages[1].lr == cfg.finetune_lr and exps["vae"].train.epochs == 5
    frozen = arm_experiment(replace(cfg, finetune_epochs=0), cfg.arms[0], vae, tmp_path)
    assert frozen.model.freeze_backbone and not frozen.train.stages
    tampered = dict(exps)
    train = exps["random"].train
    tampered["random"] = replace(exps["random"], train=replace(train, optimizer=replace(train.optimizer, lr=0.1)))
    with pytest.raises(AssertionError, match="hyper-parameters"):
        assert_identical_recipes(tampered)


def test_bad_arms(tmp_path: Path) -> None:
    cfg = _preset()
    with pytest.raises(ConfigError, match="set vae_run"):
        arm_experiment(cfg, cfg.arms[0], None, tmp_path)
    with pytest.raises(UnknownNameError, match="Valid encoder inits: file, imagenet, random, vae"):
        arm_experiment(cfg, EncoderArmConfig("x", "imagenet21k"), None, tmp_path)
    with pytest.raises(ConfigError, match="unique"):
        _preset("arms=[{name: a}, {name: a}]")


def test_vae_trained_on_test_lesions_is_refused(vae_run: Path, small_ham_csv: Path, tmp_path: Path) -> None:
    cfg = _preset("experiment.data.dataset=csv", f"experiment.data.csv={small_ham_csv}",
                  "experiment.data.image_size=32", f"experiment.data.cache_dir={tmp_path}")
    data = prepare_data(cfg.experiment.data, progress=False)
    assert check_vae_never_saw_test(VAERun.open(vae_run), data) > 0  # same data + seed: fine
    leaky = tmp_path / "leaky"
    leaky.mkdir()
    for name in ("config.yaml", "encoder.safetensors"):
        (leaky / name).write_bytes((vae_run / name).read_bytes())
    splits = pd.read_csv(vae_run / "splits.csv").assign(split="train")  # as if it trained on everything
    splits.to_csv(leaky / "splits.csv", index=False)
    with pytest.raises(LeakageError, match="lesions of this comparison's test split"):
        check_vae_never_saw_test(VAERun.open(leaky), data)


def test_last_stage_unfreezes_the_last_stage() -> None:
    model = timm.create_model("test_convnext", num_classes=0)
    frozen = UNFREEZE.get("last-stage")(model)
    trainable = {n for n, _ in model.named_parameters()} - frozen
    assert trainable and all(n.startswith(("stages.3.", "head.norm.")) for n in trainable)
    assert any(n.startswith("stages.3.blocks") for n in trainable)


@pytest.mark.slow
def test_compare_pretraining_end_to_end(vae_run: Path, small_ham_csv: Path, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    code = main(["-q", "compare-pretraining", "--output-dir", str(tmp_path), "--vae-run", str(vae_run),
                 "--config", str(PRESET),
                 "experiment.data.dataset=csv", f"experiment.data.csv={small_ham_csv}", "experiment.data.options={}",
                 "experiment.data.image_size=32", f"experiment.data.cache_dir={tmp_path}/cache",
                 "experiment.train.batch_size=16", "experiment.train.progress=false", "frozen_epochs=2",
                 "finetune_epochs=1"])
    assert code == 0
    (root,) = [p for p in tmp_path.iterdir() if p.name.startswith("compare-pretraining")]
    summary = pd.read_csv(root / "summary.csv", index_col=0)
    assert list(summary.index) == ["vae", "imagenet-lite0", "random"]
    assert summary["test balanced accuracy"].between(0, 1).all()
    dynamics = pd.read_csv(root / "dynamics.csv", index_col=[0, 1])
    assert {"slope 1–2", "slope 3–3"} <= set(dynamics.columns)
    assert "loss: gap train − val" in dynamics.loc["vae"].index
    runs = json.loads((root / "comparison.json").read_text())["runs"]
    for run in map(Path, runs.values()):
        history = pd.read_csv(run / "history.csv")
        assert list(history["epoch"]) == [1, 2, 3]
        splits = pd.read_csv(run / "splits.csv")
        test = set(splits.loc[splits["split"] == "test", "lesion_id"])
        assert not test & set(splits.loc[splits["split"] != "test", "lesion_id"])
        assert set(pd.read_csv(run / "predictions.csv")["image_id"]) == set(
            splits.loc[splits["split"] == "test", "image_id"])
    html = (root / "report.html").read_text()
    for section in ("Test metrics per encoder", "Learning curves side by side", "Training dynamics: vae",
                    "test sensitivity P1", "data:image/png;base64,"):
        assert section in html, section
    first = (Path(runs["vae"]) / "report.html").read_text()
    assert first.index("Triage: sensitivity per priority") < first.index("Headline metrics")
