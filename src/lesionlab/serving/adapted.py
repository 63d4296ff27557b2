"""A model adapted to one clinic: the base model's probabilities recalibrated and the triage operating point refit.

``lesionlab adapt`` writes a folder with ``adaptation.json`` (the base model, the site temperature and priority-1
thresholds, the images used and when, before/after figures) and ``splits.csv`` (those images, marked as seen).
:func:`load_adapted` loads the base model and wraps it in :class:`SiteAdapted`, whose output is the base model's
log-probabilities: the predictor's temperature is then the *site* temperature, applied on top of the base model's
own calibration, and its thresholds are the site's. Works for single runs, ensembles, ONNX and built-in models.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lesionlab.inference.ood import forward_with_features
from lesionlab.models.checkpoint import Preprocessing

ADAPTATION_FILE = "adaptation.json"


class SiteAdapted(nn.Module):
    """``log_softmax(base(x) / T_base)``: the base model's calibrated log-probabilities, as logits for the site's
    temperature. OOD scoring sees the base model's own features and logits."""

    def __init__(self, base: nn.Module, base_temperature: float) -> None:
        super().__init__()
        self.base = base
        self.base_temperature = float(base_temperature)
        self.ood_detector = getattr(base, "ood_detector", None)
        self.metadata_spec = getattr(base, "metadata_spec", None)

    def forward(self, x: torch.Tensor, *args: Any) -> torch.Tensor:
        return torch.log_softmax(self.base(x, *args).float() / self.base_temperature, dim=-1)

    def forward_with_features(self, x: torch.Tensor, meta: torch.Tensor | None = None
                              ) -> tuple[torch.Tensor, torch.Tensor]:
        """The base model's ``(features, logits)``: its OOD detector was fitted on exactly these."""
        return forward_with_features(self.base, x, meta)

    @property
    def members(self) -> nn.ModuleList:
        """An ensemble base's members (its OOD detector scores each member)."""
        return self.base.members


def is_adapted(path: str | Path) -> bool:
    return Path(path).is_dir() and (Path(path) / ADAPTATION_FILE).is_file()


def read_adaptation(path: str | Path) -> dict[str, Any]:
    return json.loads((Path(path) / ADAPTATION_FILE).read_text())


def adapted_preprocessing(base: Preprocessing, record: dict[str, Any]) -> Preprocessing:
    """The base preprocessing with the site's temperature and thresholds."""
    return replace(base, temperature=float(record["temperature"]), thresholds=dict(record["thresholds"]))
