"""A test-time cascade: answer from a cheap policy, escalate to the full one when the answer is close to changing.

An ensemble with 8-view TTA costs 16 member passes per image, yet most images get the same diagnosis and triage
priority from the members' single identity view. A :class:`CascadeRule` runs the ``first`` policy on every image and
the rest of the ``then`` policy's views only on images whose answer is fragile: the top-1 probability leads the
second by less than ``margin``, or a triage threshold's class lies within ``band`` of its threshold (in log
probability). Escalated images get exactly the ``then`` policy's probabilities (views are averaged uniformly, so the
first views' share is reused), the others the ``first`` policy's. Cascades of cheap and costly models for the same
accuracy at lower cost: Wang et al., "Wisdom of Committees: An Overlooked Approach to Faster and More Accurate
Models", ICLR 2022. :func:`lesionlab.evaluation.cascade_fit.fit_cascade` chooses the two numbers on validation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from lesionlab.config import ConfigError
from lesionlab.inference.tta import View, get_tta, same_view


@dataclass(frozen=True)
class CascadeRule:
    """Which images leave the ``first`` policy for the ``then`` policy (TTA policy names, ``first`` ⊂ ``then``)."""

    margin: float  # escalate when top-1 minus top-2 probability is below this
    band: float  # ... or when log(p_c / threshold_c) lies within ±band for a triage-threshold class c
    first: str = "none"
    then: str = "d4"
    chosen_on: str = ""  # how the numbers were chosen, shown to users

    def __post_init__(self) -> None:
        if self.margin < 0 or self.band < 0:
            raise ConfigError(f"cascade margin and band must be >= 0, got {self.margin} and {self.band}")
        first, then = get_tta(self.first), get_tta(self.then)  # an unknown name fails here, listing the valid ones
        if not all(any(same_view(f, t) for t in then) for f in first):
            raise ConfigError(f"cascade: every view of '{self.first}' must be one of '{self.then}'")

    def views(self) -> tuple[tuple[View, ...], tuple[View, ...]]:
        """(the first policy's views, the full policy's other views): what escalated images still need."""
        first = get_tta(self.first)
        return first, tuple(v for v in get_tta(self.then) if not any(same_view(v, f) for f in first))

    def escalate(self, probs: np.ndarray, class_names: Sequence[str],
                 thresholds: Mapping[str, float] | None = None) -> np.ndarray:
        """Boolean ``(N,)``: which rows of the first policy's probabilities ``(N, C)`` go to the full policy."""
        probs = np.asarray(probs, dtype=np.float64)
        top2 = np.sort(probs, axis=1)[:, -2:] if probs.shape[1] > 1 else np.concatenate(
            [np.zeros_like(probs), probs], axis=1)
        fragile = (top2[:, 1] - top2[:, 0]) < self.margin
        for name, t in (thresholds or {}).items():
            if name in class_names and t > 0:
                p = np.clip(probs[:, list(class_names).index(name)], 1e-12, None)
                fragile |= np.abs(np.log(p / t)) < self.band
        return fragile

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CascadeRule:
        fields = ("margin", "band", "first", "then", "chosen_on")
        missing, unknown = {"margin", "band"} - set(d), set(d) - set(fields)
        if missing or unknown:
            raise ConfigError(f"a cascade rule has the keys {', '.join(fields)} (margin and band required); got "
                              f"{sorted(d)}")
        return cls(**dict(d))


__all__ = ["CascadeRule"]
