"""Source-balanced sampling: several populations drawn equally often (issue 25), refused for a single source."""

from __future__ import annotations

import numpy as np
import pytest

from lesionlab.config import ConfigError
from lesionlab.training.samplers import SAMPLERS, create_sampler


def _draws(name: str, targets: np.ndarray, sources: np.ndarray | None, seed: int = 0) -> np.ndarray:
    return np.array(list(create_sampler(name, targets, seed, sources)))


def test_source_balanced_draws_each_population_equally_and_keeps_its_class_mix() -> None:
    sources = np.array(["ham"] * 900 + ["archive"] * 100)
    rng = np.random.default_rng(0)
    targets = np.where(sources == "ham", rng.choice([0, 1], 1000, p=[0.8, 0.2]), rng.choice([0, 1], 1000, p=[0.3, 0.7]))
    drawn = _draws("source-balanced", targets, sources)
    assert len(drawn) == 1000
    share = (sources[drawn] == "archive").mean()
    assert 0.45 < share < 0.55  # 10 % of the images, half of the draws
    archive = drawn[sources[drawn] == "archive"]
    assert 0.6 < (targets[archive] == 1).mean() < 0.8  # within a source its own class mix stays
    np.testing.assert_array_equal(drawn, _draws("source-balanced", targets, sources))  # seeded


def test_source_class_balanced_equalises_every_source_and_class() -> None:
    sources = np.array(["ham"] * 900 + ["archive"] * 100)
    targets = np.array([0] * 800 + [1] * 100 + [0] * 10 + [1] * 90)
    drawn = _draws("source-class-balanced", targets, sources, seed=1)
    pairs = np.char.add(sources[drawn], targets[drawn].astype(str))
    _, counts = np.unique(pairs, return_counts=True)
    assert len(counts) == 4 and counts.min() / counts.max() > 0.8  # ~250 each


@pytest.mark.parametrize("name", ["source-balanced", "source-class-balanced"])
def test_population_samplers_need_several_sources(name: str) -> None:
    targets = np.array([0, 1] * 50)
    for sources in (None, np.array(["ham"] * 100)):
        with pytest.raises(ConfigError, match="several sources"):
            create_sampler(name, targets, 0, sources)
    assert name in SAMPLERS.names()
