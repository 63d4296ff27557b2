"""The study presets under configs/: they load, every component name resolves, each says what differs."""

from __future__ import annotations

from pathlib import Path

import pytest

from lesionlab.config import load_config
from lesionlab.engine.ablate import ablation_configs
from lesionlab.training.validation import check_component_names

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
PRESETS = ("focal-ablation", "smote-undersampling", "staged-finetune", "resolution-study")


@pytest.mark.parametrize("name", PRESETS)
def test_preset_loads_and_documents_itself(name: str) -> None:
    path = CONFIGS / f"{name}.yaml"
    text = path.read_text()
    assert "What the" in text and "What differs here" in text  # the comment block the issue asks for
    cfg = load_config(path)
    check_component_names(cfg)
    assert cfg.name == name


def test_preset_recipes() -> None:
    focal = load_config(CONFIGS / "focal-ablation.yaml")
    assert (focal.train.loss.name, focal.train.loss.focal_gamma, focal.train.loss.class_weights) == (
        "focal", 2.0, "inverse")
    variants = dict(ablation_configs(CONFIGS / "focal-ablation.yaml", ["dropout", "augment", "class_weights", "focal"]))
    assert len(variants) == 5
    smote = load_config(CONFIGS / "smote-undersampling.yaml")
    sampling = smote.train.sampling
    assert (sampling.undersample_cap, sampling.oversample, sampling.smote_space) == (250, "smote", "pixel")
    staged = load_config(CONFIGS / "staged-finetune.yaml")
    assert [s.unfreeze for s in staged.train.stages] == ["head", "last-block", "all"]
    assert staged.train.stages[2].lr < staged.train.stages[0].lr
    assert load_config(CONFIGS / "resolution-study.yaml").data.image_size == 28


def test_dropout_factor_refuses_fixed_dropout_heads() -> None:
    from lesionlab.config import ConfigError

    with pytest.raises(ConfigError, match="fixed dropout rate"):
        ablation_configs(None, ["dropout"], ["model.head=fc-dropout-fc"])
