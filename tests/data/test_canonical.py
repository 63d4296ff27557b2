"""Canonical acquisition: a larger image is brought to the training files' form, a smaller one is left alone, and
a full-resolution original then reaches the model like its 200x150 copy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from lesionlab.data.canonical import CANONICAL, canonicalise
from lesionlab.data.crops import get_crop
from lesionlab.registry import UnknownNameError


def test_larger_images_shrink_and_smaller_ones_pass_unchanged() -> None:
    rng = np.random.default_rng(0)
    big = Image.fromarray(rng.integers(0, 256, (450, 600, 3), dtype=np.uint8))
    small = Image.fromarray(rng.integers(0, 256, (90, 120, 3), dtype=np.uint8))
    assert canonicalise(big, "ham-200x150").size == (200, 150)
    assert canonicalise(small, "ham-200x150") is small
    assert canonicalise(big, None) is big and canonicalise(big, "none") is big
    with pytest.raises(UnknownNameError, match="ham-200x150"):
        CANONICAL.get("ham-200x15")


@pytest.mark.realdata
def test_original_reaches_the_model_like_its_copy(shared_data: Path) -> None:
    index = pd.read_csv(shared_data / "ham10000" / "images_600x450_index.csv").head(20)
    crop = get_crop("center-square")
    plain, canonical = [], []
    for image_id in index["image_id"]:
        original = Image.open(shared_data / "ham10000" / "images_600x450" / f"{image_id}.jpg").convert("RGB")
        copy = np.asarray(crop(Image.open(shared_data / "ham10000" / "images_200x150" / f"{image_id}.jpg")
                               .convert("RGB"), 112), dtype=np.float64)
        plain.append(np.abs(np.asarray(crop(original, 112), dtype=np.float64) - copy).mean())
        canonical.append(np.abs(np.asarray(crop(canonicalise(original, "ham-200x150"), 112),
                                           dtype=np.float64) - copy).mean())
    assert np.mean(canonical) < 0.8 * np.mean(plain)


@pytest.mark.realdata
def test_predictor_applies_the_models_chain(shared_data: Path) -> None:
    import torch

    from lesionlab.models.checkpoint import Preprocessing
    from lesionlab.serving.predictor import Predictor

    path = sorted((shared_data / "ham10000" / "images_600x450").glob("*.jpg"))[0]
    prep = Preprocessing(image_size=32, crop="center-square", mean=(0.5,) * 3, std=(0.5,) * 3,
                         class_names=("mel", "nv"), taxonomy="ham7", canonical="ham-200x150")
    predictor = Predictor(torch.nn.Identity(), prep)
    original = Image.open(path).convert("RGB")
    crop = get_crop("center-square")
    assert np.array_equal(predictor.preprocess(path), np.asarray(crop(canonicalise(original, "ham-200x150"), 32)))
    predictor.prep = Preprocessing(**{**prep.__dict__, "canonical": None})
    assert np.array_equal(predictor.preprocess(path), np.asarray(crop(original, 32)))
