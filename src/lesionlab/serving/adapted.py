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
from lesionlab.inference.site_head import SiteHead, SiteHeadWeights, features_and_logits
from lesionlab.models.checkpoint import Preprocessing

ADAPTATION_FILE = "adaptation.json"
HEAD_FILE = "site_head.npz"


class SiteAdapted(nn.Module):
    """``log_softmax(base(x) / T_base)``: the base model's calibrated log-probabilities, as logits for the site's
    temperature; with a site ``head`` (:class:`~lesionlab.inference.site_head.SiteHead`) those pass through it,
    on the features of the same pass. OOD scoring sees the base model's own features and logits."""

    def __init__(self, base: nn.Module, base_temperature: float, head: SiteHead | None = None) -> None:
        super().__init__()
        self.base = base
        self.base_temperature = float(base_temperature)
        self.head = head
        self.ood_detector = getattr(base, "ood_detector", None)
        self.metadata_spec = getattr(base, "metadata_spec", None)

    def forward(self, x: torch.Tensor, *args: Any) -> torch.Tensor:
        if self.head is None:
            return torch.log_softmax(self.base(x, *args).float() / self.base_temperature, dim=-1)
        features, output = features_and_logits(self.base, x)
        return self.head(features, torch.log_softmax(output.float() / self.base_temperature, dim=-1))

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


def load_site_head(path: str | Path) -> SiteHead | None:
    """The adapted folder's site head (``site_head.npz``), or None when only the operating point was adapted."""
    file = Path(path) / HEAD_FILE
    return SiteHead(SiteHeadWeights.load(file)) if file.is_file() else None
