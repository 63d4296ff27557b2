"""``Predictor.load`` on a real trained run: preprocessing, calibration, unsure flag, triage rule, heat-maps,
metadata, ensembles and image modes (all on images the run never trained or validated on)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lesionlab.config import ConfigError
from lesionlab.models.checkpoint import load_model, save_model
from lesionlab.serving.metadata import MetadataError
from lesionlab.serving.predictor import Predictor
from tests.serving.conftest import encode

pytestmark = pytest.mark.slow


def _probs(results: list) -> np.ndarray:
    return np.array([[r.probabilities[c] for c in sorted(r.probabilities)] for r in results])


def test_load_restores_preprocessing_and_unsure_threshold(serving_run: Path, predictor: Predictor) -> None:
    _, prep = load_model(serving_run / "model.pt")
    assert predictor.prep == prep
    assert predictor.prep.image_size == 32 and predictor.prep.tta == "flips"
    assert predictor.unsure_available and 0 < predictor.prep.unsure_threshold < 1
    assert "validation images" in predictor.unsure_rule
    card = predictor.card
    assert card.backend == "torch" and card.dataset == "ham10000" and card.licence == "CC BY-NC 4.0"
    metrics = json.loads((serving_run / "metrics.json").read_text())
    assert card.metrics["balanced_accuracy"] == pytest.approx(metrics["balanced_accuracy"])


def test_predict_returns_ranked_calibrated_results(predictor: Predictor, unseen_images: list[Path]) -> None:
    results = predictor.predict(unseen_images[:4], topk=3)
    for r in results:
        probs = [d.probability for d in r.top]
        assert probs == sorted(probs, reverse=True) and len(probs) == 3
        assert sum(r.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
        assert r.triage_priority in (1, 2, 3) and r.triage_rule in ("top-1", "operating-threshold")
        assert r.unsure == (max(r.probabilities.values()) < predictor.prep.unsure_threshold)
        assert "threshold" in r.unsure_reason


def test_temperature_from_the_checkpoint_is_applied(predictor: Predictor, unseen_images: list[Path]) -> None:
    hot = Predictor(predictor.model, replace(predictor.prep, temperature=4 * predictor.prep.temperature))
    p1 = _probs(predictor.predict(unseen_images[:3]))
    p5 = _probs(hot.predict(unseen_images[:3]))
    assert (p5.max(1) < p1.max(1)).all()  # a higher temperature flattens the distribution
    assert (p5.argmax(1) == p1.argmax(1)).all()


def test_operating_threshold_changes_triage(predictor: Predictor, unseen_images: list[Path]) -> None:
    low = Predictor(predictor.model, replace(predictor.prep, thresholds={"mel": 0.0}))
    for r in low.predict(unseen_images[:3]):
        assert r.triage_priority == 1
        assert r.label == "mel" or r.triage_rule == "operating-threshold"


def test_missing_unsure_threshold_is_said(serving_run: Path, tmp_path: Path, unseen_images: list[Path]) -> None:
    model, prep = load_model(serving_run / "model.pt")
    from lesionlab.config import load_config

    cfg = load_config(serving_run / "config.yaml")
    save_model(tmp_path / "model.pt", model, cfg.model, replace(prep, unsure_threshold=None, unsure_rule=""))
    (r,) = Predictor.load(tmp_path / "model.pt").predict(unseen_images[:1])
    assert r.unsure is None and "not available" in r.unsure_reason


def test_heatmap_and_metadata(predictor: Predictor, jpeg_bytes: bytes) -> None:
    (r,) = predictor.predict([jpeg_bytes], metadata=[{"age": 61, "sex": "male", "site": "back"}], heatmap=True)
    assert r.metadata == {"age": 61.0, "sex": "male", "site": "back"}
    assert r.heatmap["method"] in ("gradcam", "saliency") and r.heatmap["class"] == r.label
    for key in ("image", "overlay"):
        assert r.heatmap[key].startswith("data:image/png;base64,")
    with pytest.raises(MetadataError, match="age"):
        predictor.predict([jpeg_bytes], metadata=[{"age": -5}])
    with pytest.raises(MetadataError, match="one per image"):
        predictor.predict([jpeg_bytes], metadata=[None, None])


def test_saliency_highlights_the_evidence() -> None:
    from lesionlab.serving.heatmap import gradient_saliency

    class Corner(torch.nn.Module):  # the logit depends only on the top-left quadrant
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.stack([x[:, :, :8, :8].sum((1, 2, 3)), -x[:, :, :8, :8].sum((1, 2, 3))], 1)

    heat = gradient_saliency(Corner(), torch.randn(1, 3, 32, 32), 0)
    assert heat.shape == (32, 32) and heat.max() == pytest.approx(1.0)
    assert heat[:8, :8].mean() > 5 * heat[16:, 16:].mean()


def test_ensemble_averages_members(serving_run: Path, predictor: Predictor, tmp_path: Path,
                                   unseen_images: list[Path]) -> None:
    manifest = tmp_path / "ensemble.json"
    manifest.write_text(json.dumps({"name": "pair", "members": [str(serving_run), str(serving_run / "model.pt")]}))
    ens = Predictor.load(manifest)
    assert ens.backend == "ensemble" and len(ens.card.members) == 2 and not ens.unsure_available
    np.testing.assert_allclose(_probs(ens.predict(unseen_images[:3])), _probs(predictor.predict(unseen_images[:3])),
                               atol=1e-5)
    assert Predictor.load([serving_run, serving_run]).backend == "ensemble"


def test_ensemble_members_must_agree(serving_run: Path, tmp_path: Path) -> None:
    model, prep = load_model(serving_run / "model.pt")
    from lesionlab.config import load_config

    other = tmp_path / "other.pt"
    crop = "pad" if prep.crop != "pad" else "full"
    save_model(other, model, load_config(serving_run / "config.yaml").model, replace(prep, crop=crop))
    with pytest.raises(ConfigError, match="crop"):
        Predictor.load([serving_run, other])
    # another image size is fine: the ensemble reads the largest and resizes for the smaller member
    larger = tmp_path / "larger.pt"
    save_model(larger, model, load_config(serving_run / "config.yaml").model,
               replace(prep, image_size=prep.image_size + 16))
    assert Predictor.load([serving_run, larger]).prep.image_size == prep.image_size + 16
    with pytest.raises(FileNotFoundError, match=r"no model\.pt"):
        Predictor.load(tmp_path)


def test_image_modes_and_exif_rotation(predictor: Predictor, unseen_images: list[Path]) -> None:
    rgb = Image.open(unseen_images[1]).convert("RGB")
    variants = {
        "rgba": encode(rgb.convert("RGBA")),
        "grey": encode(rgb.convert("L")),
        "palette": encode(rgb.convert("P", palette=Image.Palette.ADAPTIVE)),
        "16-bit": encode(Image.fromarray(np.asarray(rgb.convert("L"), dtype=np.uint16) * 257)),
        "cmyk": encode(rgb.convert("CMYK"), "JPEG", quality=95),
    }
    for name, data in variants.items():
        img = predictor.decode(data, name)
        assert img.mode == "RGB" and img.size == rgb.size, name
    # 16-bit grey rescales to the same 8-bit values (not clipped to white)
    grey16 = np.asarray(predictor.decode(variants["16-bit"]))[..., 0]
    assert np.abs(grey16.astype(int) - np.asarray(rgb.convert("L"), dtype=int)).max() <= 1
    # EXIF orientation 6 (rotate 90° clockwise to display): the stored pixels are the upright image rotated back
    exif = Image.Exif()
    exif[0x0112] = 6
    stored = rgb.transpose(Image.Transpose.ROTATE_90)
    rotated = encode(stored, "JPEG", quality=95, exif=exif.tobytes())
    assert predictor.decode(rotated).size == rgb.size
    upright = encode(rgb, "JPEG", quality=95)
    a, b = predictor.predict([rotated, upright])
    assert a.label == b.label
    assert max(abs(a.probabilities[c] - b.probabilities[c]) for c in a.probabilities) < 0.05
