"""Ensembles of trained runs: the ``ensemble.json`` manifest and the combination of member probabilities.

The manifest (written by ``lesionlab cv``, read by :mod:`lesionlab.serving.model_loading` for ``evaluate`` and
``predict``) lists member ``model.pt`` files relative to its folder, optional weights, and the decision thresholds
chosen for the ensemble. The ensemble's probability is the weighted mean of the members' temperature-scaled
probabilities (each member keeps the temperature fitted on its own validation split), per TTA view, averaged
over the views — :func:`combine_member_probs` computes exactly what the loaded ensemble module predicts.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import softmax

from lesionlab.errors import EvaluationInputError

MANIFEST = "ensemble.json"
FORMAT = "lesionlab-ensemble/1"


def manifest_path(path: str | Path) -> Path | None:
    """The manifest of ``path`` (a folder holding ``ensemble.json`` and no ``model.pt``, or the file itself)."""
    path = Path(path)
    if path.is_dir():
        return path / MANIFEST if (path / MANIFEST).is_file() and not (path / "model.pt").is_file() else None
    return path if path.is_file() and path.suffix == ".json" and path.name == MANIFEST else None


def normalise_weights(weights: Sequence[float] | None, n: int) -> np.ndarray:
    """Equal weights when ``None``; otherwise non-negative weights rescaled to sum to 1."""
    if weights is None:
        return np.full(n, 1.0 / n)
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n,) or (w < 0).any() or not np.isfinite(w).all() or w.sum() <= 0:
        raise EvaluationInputError(f"ensemble weights must be {n} non-negative numbers with a positive sum, got "
                                   f"{list(weights)}")
    return w / w.sum()


def write_manifest(directory: str | Path, members: Sequence[str | Path], *, weights: Sequence[float] | None = None,
                   thresholds: Mapping[str, float] | None = None, extra: Mapping[str, Any] | None = None) -> Path:
    """Write ``directory/ensemble.json``; member paths are stored relative to ``directory`` (``../run/model.pt``
    for sibling run directories), so the folders move together; absolute only across drives."""
    directory = Path(directory)
    rel = []
    for m in members:
        p = Path(m).resolve()
        if not p.is_file():
            raise EvaluationInputError(f"ensemble member {p} does not exist")
        try:
            rel.append(os.path.relpath(p, directory.resolve()))
        except ValueError:  # another drive (Windows)
            rel.append(str(p))
    data = {"format": FORMAT, "members": rel,
            "weights": [float(w) for w in normalise_weights(weights, len(rel))],
            "thresholds": {k: float(v) for k, v in (thresholds or {}).items()}, **(extra or {})}
    path = directory / MANIFEST
    path.write_text(json.dumps(data, indent=2))
    return path


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest with member paths resolved (``members``) and weights normalised (``weights``)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise EvaluationInputError(f"{path} is not a readable ensemble manifest: {exc}") from exc
    members = data.get("members") if isinstance(data, dict) else None
    if not isinstance(members, list) or not members:
        raise EvaluationInputError(f"{path}: an ensemble manifest needs a non-empty 'members' list")
    resolved = [(path.parent / str(m)).resolve() for m in members]
    missing = [str(m) for m in resolved if not m.exists()]
    if missing:
        raise EvaluationInputError(f"{path}: ensemble members not found: {missing}")
    return {**data, "members": resolved, "weights": normalise_weights(data.get("weights"), len(resolved))}


def combine_member_probs(member_view_logits: Sequence[np.ndarray], temperatures: Sequence[float] | None = None,
                         weights: Sequence[float] | None = None) -> np.ndarray:
    """``Σ_m w_m · mean_v softmax(z_mv / T_m)`` for members' per-view logits ``(V, N, C)``."""
    n = len(member_view_logits)
    if n == 0:
        raise ValueError("an ensemble needs at least one member")
    temps = [1.0] * n if temperatures is None else list(temperatures)
    w = normalise_weights(weights, n)
    out = None
    for wi, z, t in zip(w, member_view_logits, temps, strict=True):
        z = np.asarray(z, dtype=np.float64)
        p = softmax((z[None] if z.ndim == 2 else z) / float(t), axis=-1).mean(axis=0)
        out = wi * p if out is None else out + wi * p
    assert out is not None  # n >= 1
    return out
