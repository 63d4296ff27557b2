"""Corruptions (shape, determinism, severity ordering) and the robustness table on a tiny model."""

from __future__ import annotations

import numpy as np
import pytest

from lesionlab.engine.robustness import _check_names, robustness_table
from lesionlab.evaluation.corruptions import CORRUPTIONS, SEVERITIES, corrupt_batch
from lesionlab.models.checkpoint import load_model
from lesionlab.registry import UnknownNameError

EXPECTED = {"gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise", "defocus_blur", "motion_blur",
            "zoom_blur", "brightness_up", "brightness_down", "contrast_up", "contrast_down", "jpeg", "pixelate",
            "black_corners", "ink_characters"}


@pytest.fixture(scope="module")
def lesion_like() -> np.ndarray:
    """Two 32-px images with structure (a dark blob on textured skin), so blurs and compression change them."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:32, 0:32]
    base = np.stack([200 - 40 * np.exp(-((yy - 15) ** 2 + (xx - 17) ** 2) / 40.0)] * 3, axis=-1)
    base = base * np.array([1.0, 0.8, 0.7]) + rng.normal(0, 12, (32, 32, 3))
    return np.clip(np.stack([base, base[::-1]]), 0, 255).astype(np.uint8)


def test_every_issue_corruption_is_registered() -> None:
    assert set(CORRUPTIONS.names()) >= EXPECTED


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corruptions_keep_shape_are_reproducible_and_grow_with_severity(name: str, lesion_like: np.ndarray) -> None:
    outs = [corrupt_batch(lesion_like, name, s, seed=3) for s in SEVERITIES]
    for out in outs:
        assert out.shape == lesion_like.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(outs[2], corrupt_batch(lesion_like, name, 3, seed=3))
    change = [np.abs(o.astype(float) - lesion_like).mean() for o in outs]
    assert change[0] > 0, "severity 1 must change the image"
    assert change[-1] > change[0], f"severity 5 must change the image more than severity 1: {change}"


def test_bad_severity_and_unknown_corruption_are_errors(lesion_like: np.ndarray) -> None:
    with pytest.raises(ValueError, match="severity"):
        corrupt_batch(lesion_like, "jpeg", 6)
    with pytest.raises(UnknownNameError, match="Did you mean 'jpeg'"):
        _check_names(["jpg"], SEVERITIES)
    from lesionlab.errors import EvaluationInputError

    with pytest.raises(EvaluationInputError, match="severities"):
        _check_names(["jpeg"], [0, 7])


def test_robustness_table_on_a_tiny_model(run_factory, lesion_like: np.ndarray) -> None:
    model, prep = load_model(run_factory(size=32) / "model.pt")
    images = np.concatenate([lesion_like] * 4)
    y = np.arange(len(images)) % 3
    table, clean = robustness_table(model, images, y, prep, corruptions=["black_corners", "pixelate"],
                                    severities=[1, 5])
    assert list(table.index) == ["black_corners", "pixelate"]
    assert list(table.columns) == ["1", "5", "mean", "relative to clean", "Δ vs clean"]
    assert 0 <= clean <= 1 and ((table[["1", "5"]] >= 0) & (table[["1", "5"]] <= 1)).all().all()
    row = table.loc["pixelate"]
    assert row["mean"] == pytest.approx((row["1"] + row["5"]) / 2)
    assert row["Δ vs clean"] == pytest.approx(row["mean"] - clean)
