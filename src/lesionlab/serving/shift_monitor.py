"""Shift before labels, live: the service's recent requests against the model's training data (``GET /v1/shift``).

The last ``window`` answered images are kept as the first member's features (unit-normalised), top-1 predictions and
OOD flags. On request they are compared with the model's reference: the training lesions in its kNN OOD bank (a
random sample of the training split's features) for a two-sample MMD test with a permutation p-value
(:func:`lesionlab.evaluation.shift.mmd_test`), and the true class mix of the model's own test split (from its card)
for the predicted class mix. Nothing is stored beyond the window's numbers: no image, no file name.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from lesionlab.evaluation.shift import mmd_test
from lesionlab.inference.ood import INT8_UNIT

#: Below this many images in the window no two-sample test is run (its p-value would mean little).
MIN_IMAGES = 30


def _unit(features: np.ndarray) -> np.ndarray:
    f = np.asarray(features, np.float32)
    return f / (np.linalg.norm(f, axis=1, keepdims=True) + 1e-12)


class ShiftMonitor:
    """A rolling window of answered images and what they are compared with; thread-safe."""

    def __init__(self, reference: np.ndarray, class_names: Sequence[str], *,
                 reference_mix: Mapping[str, float] | None = None, reference_name: str = "training lesions",
                 window: int = 500, min_images: int = MIN_IMAGES) -> None:
        self.reference, self.class_names = _unit(reference), tuple(class_names)
        self.reference_mix = dict(reference_mix) if reference_mix else None
        self.reference_name, self.window, self.min_images = reference_name, window, min_images
        self._features: deque[np.ndarray] = deque(maxlen=window)
        self._top1: deque[int] = deque(maxlen=window)
        self._ood: deque[bool] = deque(maxlen=window)
        self._lock = threading.Lock()

    @classmethod
    def for_model(cls, detector: Any, class_names: Sequence[str], card: Mapping[str, Any] | None = None,
                  window: int = 500) -> ShiftMonitor | None:
        """From the first member's OOD detector (its kNN bank of training features) and the model card's test class
        counts; None when the model carries no kNN bank to compare with."""
        state = getattr(detector, "state", None) or {}
        if "bank" not in state:
            return None
        bank = np.asarray(state["bank"])
        bank = bank.astype(np.float32) / INT8_UNIT if bank.dtype == np.int8 else bank.astype(np.float32)
        mix = None
        for evaluation in ((card or {}).get("evaluations") or {}).values():
            counts = evaluation.get("class_counts") if isinstance(evaluation, Mapping) else None
            if counts:
                total = float(sum(counts.values()))
                mix = {c: counts.get(c, 0) / total for c in class_names}
                break
        return cls(bank, class_names, reference_mix=mix, window=window)

    def observe(self, features: np.ndarray, probs: np.ndarray, ood: np.ndarray | None = None) -> None:
        """Add answered images: their features ``(N, F)``, probabilities ``(N, C)`` and OOD flags ``(N,)``."""
        unit, top1 = _unit(features), np.asarray(probs).argmax(1)
        flags = np.zeros(len(unit), bool) if ood is None else np.asarray(ood, bool)
        with self._lock:
            self._features.extend(unit)
            self._top1.extend(int(t) for t in top1)
            self._ood.extend(bool(f) for f in flags)

    def summary(self, permutations: int = 200) -> dict[str, Any]:
        """The window against the reference: predicted class mix (and its distance to the reference mix), OOD-flag
        rate, MMD² with its p-value once the window holds ``min_images``."""
        with self._lock:
            features, top1, ood = np.array(self._features), np.array(self._top1), np.array(self._ood)
        n = len(top1)
        mix = {c: float((top1 == i).mean()) if n else 0.0 for i, c in enumerate(self.class_names)}
        out: dict[str, Any] = {
            "images": n, "window": self.window, "reference": self.reference_name,
            "reference_images": len(self.reference), "predicted_mix": mix, "reference_mix": self.reference_mix,
            "mix_distance": (0.5 * sum(abs(mix[c] - self.reference_mix.get(c, 0.0)) for c in self.class_names)
                             if self.reference_mix and n else None),
            "ood_rate": float(ood.mean()) if n else None, "mmd2": None, "p_value": None}
        if n < self.min_images:
            out["verdict"] = f"too few images for a shift test: {n} of the {self.min_images} needed"
            return out
        mmd2, p = mmd_test(features, self.reference, permutations=permutations)
        out.update(mmd2=mmd2, p_value=p, verdict=(
            "shifted: recent images differ from the training lesions (p < 0.01)" if p < 0.01
            else "no shift detected at p < 0.01"))
        return out
