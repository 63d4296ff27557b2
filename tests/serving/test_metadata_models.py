"""Metadata-fusion models through the predictor and ONNX (untrained tiny model, synthetic images: logic only)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from lesionlab.config import ModelConfig
from lesionlab.models.checkpoint import Preprocessing
from lesionlab.serving.onnx import export_onnx, load_onnx
from lesionlab.serving.predictor import Predictor

if "metadata" not in {f.name for f in dataclasses.fields(ModelConfig)}:
    pytest.skip("this checkout has no metadata-fusion models", allow_module_level=True)

HAM = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")


@pytest.fixture(scope="module")
def fusion() -> tuple[torch.nn.Module, Preprocessing]:
    from lesionlab.models.classifier import create_model
    from lesionlab.models.metadata import MetadataSpec

    torch.manual_seed(0)
    spec = MetadataSpec(sites=("back", "face", "unknown"))
    model = create_model(ModelConfig(backbone="tiny-resnet", metadata=True), len(HAM), metadata_spec=spec).eval()
    with torch.no_grad():  # make the metadata matter: an untrained branch has tiny weights after BatchNorm
        model.head[-1].weight.mul_(50)
    prep = Preprocessing(16, "center-square", (0.5,) * 3, (0.25,) * 3, HAM, "ham7", unsure_threshold=0.2)
    return model, prep


def test_predictor_feeds_metadata_to_fusion_models(fusion: tuple[torch.nn.Module, Preprocessing]) -> None:
    model, prep = fusion
    predictor = Predictor(model, prep)
    image = (np.random.default_rng(0).random((24, 24, 3)) * 255).astype(np.uint8)
    from PIL import Image

    pil = Image.fromarray(image)
    none, old, young = predictor.predict([pil] * 3, metadata=[None, {"age": 85, "site": "face"},
                                                               {"age": 5, "sex": "male", "site": "back"}])
    p = [np.array(list(r.probabilities.values())) for r in (none, old, young)]
    assert np.abs(p[1] - p[2]).max() > 1e-4 and np.abs(p[0] - p[1]).max() > 1e-4
    (again,) = predictor.predict([pil], metadata=[{"age": 85, "site": "face"}], heatmap=True)
    np.testing.assert_allclose(list(again.probabilities.values()), p[1], atol=1e-6)
    assert again.heatmap["overlay"].startswith("data:image/png")


def test_fusion_model_exports_with_a_metadata_input(fusion: tuple[torch.nn.Module, Preprocessing],
                                                    tmp_path: Path) -> None:
    model, prep = fusion
    export_onnx(model, prep, tmp_path / "m.onnx")
    ort, _, _ = load_onnx(tmp_path / "m.onnx")
    spec = model.metadata_spec
    x = torch.randn(3, 3, 16, 16)
    meta = torch.from_numpy(spec.encode([None, {"age": 40, "sex": "female"}, {"site": "back"}]))
    with torch.inference_mode():
        torch.testing.assert_close(ort(x, meta), model(x, meta), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(ort(x), model(x), atol=1e-4, rtol=1e-4)
