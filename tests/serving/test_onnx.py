"""ONNX export: dynamic batch, the preprocessing JSON beside it, ONNX Runtime used automatically for ``.onnx``
artifacts, and parity with PyTorch on real images the run never saw (max |Δprob| ≤ 1e-4, identical top-1)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from lesionlab.cli import main
from lesionlab.serving.onnx import OnnxModule, preprocessing_path
from lesionlab.serving.predictor import Predictor

pytestmark = pytest.mark.slow


def test_export_writes_graph_and_preprocessing(onnx_file: Path, predictor: Predictor) -> None:
    meta = json.loads(preprocessing_path(onnx_file).read_text())
    assert meta["format"] == "lesionlab-onnx/1"
    prep = meta["preprocessing"]
    assert prep["class_names"] == list(predictor.class_names) and prep["image_size"] == 32
    assert prep["temperature"] == pytest.approx(predictor.prep.temperature)
    assert prep["unsure_threshold"] == pytest.approx(predictor.prep.unsure_threshold)
    assert meta["card"]["dataset"] == "ham10000" and meta["card"]["metrics"]["n"] > 0


@pytest.mark.parametrize("batch", [1, 5, 16])
def test_dynamic_batch(onnx_file: Path, predictor: Predictor, batch: int) -> None:
    x = torch.randn(batch, 3, 32, 32)
    with torch.inference_mode():
        expected = predictor.model(x)
    got = OnnxModule(onnx_file)(x)
    assert got.shape == (batch, len(predictor.class_names))
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


def test_parity_on_real_unseen_images(onnx_file: Path, predictor: Predictor, unseen_images: list[Path]) -> None:
    ort = Predictor.load(onnx_file)
    assert ort.backend == "onnx" and ort.card.licence == "CC BY-NC 4.0"
    eager = predictor.predict(unseen_images)
    onnx = ort.predict(unseen_images)
    p_eager = np.array([[r.probabilities[c] for c in predictor.class_names] for r in eager])
    p_onnx = np.array([[r.probabilities[c] for c in predictor.class_names] for r in onnx])
    assert np.abs(p_eager - p_onnx).max() <= 1e-4
    assert [r.label for r in eager] == [r.label for r in onnx]
    assert [r.unsure for r in eager] == [r.unsure for r in onnx]
    assert [r.triage_priority for r in eager] == [r.triage_priority for r in onnx]
    (r,) = ort.predict(unseen_images[:1], heatmap=True)
    assert r.heatmap["method"] == "none" and "gradients" in r.heatmap["note"]


def test_onnx_without_preprocessing_json_is_refused(onnx_file: Path, tmp_path: Path) -> None:
    lone = tmp_path / "lone.onnx"
    lone.write_bytes(onnx_file.read_bytes())
    with pytest.raises(FileNotFoundError, match="preprocessing"):
        Predictor.load(lone)


def test_export_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", str(tmp_path)]) == 2
    assert "not a LesionLab run directory" in capsys.readouterr().err
    assert main(["export", str(tmp_path), "--opset", "3"]) == 2
    assert "--opset" in capsys.readouterr().err
