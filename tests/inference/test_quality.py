"""The input quality gate: table-driven bad inputs, real lesions pass, configuration errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from lesionlab.config import ConfigError
from lesionlab.inference.quality import NotAssessableError, QualityConfig, assess_quality, check_quality

RNG = np.random.default_rng(0)
YY, XX = np.mgrid[0:300, 0:300]


def _lesion_like() -> Image.Image:
    """A brown blob on skin tone with texture: what the gate must let through."""
    skin = np.stack([np.full((300, 300), 210.0), np.full((300, 300), 160.0), np.full((300, 300), 140.0)], -1)
    blob = (((YY - 150) ** 2 + (XX - 150) ** 2) < 80**2)[..., None]
    img = np.where(blob, [110.0, 70.0, 50.0], skin) + RNG.normal(0, 8, (300, 300, 3))
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


#: (case, image, words expected in a reason)
CASES = [
    ("1x1 black", Image.new("RGB", (1, 1)), ["too small"]),
    ("20000x3 strip", Image.new("RGB", (20000, 3)), ["too small", "aspect ratio"]),
    ("600x100 strip", Image.fromarray(RNG.integers(0, 256, (100, 600, 3), dtype=np.uint8)), ["aspect ratio"]),
    ("blank white", Image.new("RGB", (300, 300), (255, 255, 255)), ["near-uniform", "over-exposed", "clipped"]),
    ("blank black", Image.new("RGB", (300, 300)), ["near-uniform", "under-exposed"]),
    ("mid grey", Image.new("RGB", (300, 300), (128, 128, 128)), ["near-uniform"]),
    ("very dark lesion", Image.eval(_lesion_like(), lambda v: v // 25), ["under-exposed"]),
    ("blown-out lesion", Image.eval(_lesion_like(), lambda v: min(255, v + 120)), ["over-exposed"]),
    ("heavily blurred lesion", _lesion_like().filter(ImageFilter.GaussianBlur(12)), ["blurred"]),
]


@pytest.mark.parametrize(("case", "image", "words"), CASES, ids=[c[0] for c in CASES])
def test_bad_inputs_are_not_assessable(case: str, image: Image.Image, words: list[str]) -> None:
    report = assess_quality(image)
    assert not report.ok
    text = "; ".join(report.reasons)
    for word in words:
        assert word in text, f"{case}: {text}"
    with pytest.raises(NotAssessableError, match="not assessable") as info:
        check_quality(image, QualityConfig(), case)
    assert info.value.reasons == list(report.reasons) and info.value.name == case


def test_a_lesion_like_image_and_noise_pass_the_gate() -> None:
    assert assess_quality(_lesion_like()).ok
    assert assess_quality(Image.fromarray(RNG.integers(0, 256, (300, 300, 3), dtype=np.uint8))).ok  # OOD's job


@pytest.mark.realdata
def test_real_ham10000_images_pass(shared_data: Path) -> None:
    paths = sorted((shared_data / "ham10000" / "images_200x150").glob("*.jpg"))[::100]
    assert len(paths) >= 100
    rejected = [p.name for p in paths if not assess_quality(Image.open(p).convert("RGB")).ok]
    assert rejected == []


def test_thresholds_are_configurable_and_validated() -> None:
    img = Image.fromarray(RNG.integers(0, 256, (40, 40, 3), dtype=np.uint8))
    assert assess_quality(img).ok
    strict = QualityConfig.from_overrides(["min_side=64"])
    assert "too small" in assess_quality(img, strict).reasons[0]
    assert check_quality(Image.new("RGB", (1, 1)), QualityConfig(enabled=False), "x") is None
    assert QualityConfig.from_overrides(["enabled=false"]).enabled is False
    for bad in (["min_side"], ["size=3"], ["min_side=abc"], ["enabled=maybe"], ["max_clipped=2"],
                ["min_brightness=250"]):
        with pytest.raises(ConfigError):
            QualityConfig.from_overrides(bad)
