"""The built-in model's OOD door (issue 27, part 6): photographs of a kind its detector never learnt from are
refused with no triage priority, through the predictor and the REST API, and real lesions pass.

The held-out photographs are issue 27's: scikit-learn's flower and palace and matplotlib's Grace Hopper, whole and
as a centre crop. ``benchmarks/ood_held_out_source.py ship`` leaves both collections out of the detector's outlier
images, so these are images of a source it never saw."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from lesionlab.evaluation.ood_sources import centre_crop
from lesionlab.serving.predictor import Predictor


@pytest.fixture(scope="module")
def builtin() -> Predictor:
    return Predictor.pretrained()


def _held_out_photos() -> list[Image.Image]:
    from matplotlib import cbook
    from sklearn.datasets import load_sample_image

    photos = [Image.fromarray(load_sample_image(name)) for name in ("flower.jpg", "china.jpg")]
    with Image.open(cbook.get_sample_data("grace_hopper.jpg")) as im:
        photos.append(im.convert("RGB"))
    return [view for p in photos for view in (p, centre_crop(p))]


def test_the_builtin_detector_learnt_from_non_lesion_images(builtin: Predictor) -> None:
    detectors = builtin.ood_detector.detectors
    assert [d.method for d in detectors] == ["knn-oe", "knn-oe"]
    for d in detectors:
        assert d.fitted_on["outlier_images"] > 300 and d.fitted_on["outlier_sources"] >= 10


def _ood(builtin: Predictor, images: list) -> list[bool]:
    """The detector's verdicts through the predictor's own decoding, canonical chain and crop (no TTA: the detector
    reads the identity view)."""
    result = builtin.ood_scores(np.stack([builtin.preprocess(im) for im in images]))
    return result.ood.tolist()


def test_held_out_photographs_are_refused(builtin: Predictor) -> None:
    assert _ood(builtin, _held_out_photos()) == [True] * 6
    result = builtin.predict(_held_out_photos()[:1])[0]  # the whole flower, as `lesionlab predict` reports it
    assert result.ood and result.triage_priority is None and "out of distribution" in result.triage_reason


def test_real_lesions_pass(builtin: Predictor, shared_data: Path) -> None:
    """Original HAM10000 JPEGs from the built-in's test split and PH2 images (another clinic): at most one in ten
    flagged (the threshold passes 97.5 % of validation lesions; the held-out-source benchmark measures 1.7 % and
    2.0 % on the full sets)."""
    from lesionlab.builtin.registry import builtin_dir

    splits = pd.read_csv(builtin_dir() / "splits.csv")  # the test split neither member trained or validated on
    test_ids = set(splits.loc[splits["split"] == "test", "image_id"])
    originals = sorted(p for p in (shared_data / "ham10000" / "images_600x450").glob("*.jpg") if p.stem in test_ids)
    ph2 = sorted((shared_data / "ph2" / "images_half").glob("*.jpg"))[:10]
    assert len(originals) >= 10 and len(ph2) == 10
    for images in (originals[:10], ph2):
        flagged = _ood(builtin, images)
        assert sum(flagged) <= 1, flagged


def test_the_rest_service_refuses_a_held_out_photograph(builtin: Predictor) -> None:
    from fastapi.testclient import TestClient

    from lesionlab.config.serving import ServeConfig
    from lesionlab.serving.api import create_app

    buf = io.BytesIO()
    _held_out_photos()[0].save(buf, format="JPEG")
    with TestClient(create_app(builtin, ServeConfig(max_batch=2))) as client:
        r = client.post("/v1/predict", files={"image": ("flower.jpg", buf.getvalue(), "image/jpeg")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["ood"] is True and body["triage_priority"] is None
    assert np.isfinite(body["ood_score"]) and body["ood_score"] > 1
