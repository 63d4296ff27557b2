"""The server's inference path: probabilities and OOD verdicts of a preprocessed batch in one pass per member.

The predictor's general path runs every TTA view through the model and then the identity view again for the OOD
features. :class:`FastPath` runs each member once on all views stacked into one batch, keeps the identity view's
features for the OOD detector, and averages the members' temperature-scaled probabilities over the views: the same
numbers with fewer, larger calls. It can also use a subset of an ensemble's members and any TTA policy per call (or
the model's test-time cascade, :mod:`lesionlab.inference.cascade`: full TTA only where the answer is fragile), and
it runs the members through ONNX Runtime when each ``model.pt`` has its ``model.onnx`` export beside it (a release
ships both; heat-maps keep the PyTorch model). Metadata-fusion models, and ``fused=False`` (``serve --engine
general``, for comparison), take the predictor's general path on the loaded model.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lesionlab.config import ConfigError
from lesionlab.data.transforms import to_model_input
from lesionlab.inference.cascade import CascadeRule
from lesionlab.inference.ood import EnsembleDetector, OODResult, forward_with_features, score_images
from lesionlab.inference.predict import predict_probs
from lesionlab.inference.tta import get_tta, same_view
from lesionlab.serving.adapted import SiteAdapted
from lesionlab.serving.model_loading import Ensemble, ResizedInput
from lesionlab.serving.onnx import OnnxModule

logger = logging.getLogger(__name__)
CASCADE = "cascade"  # the test-time cascade's name where a TTA policy is chosen


@dataclass(frozen=True)
class Member:
    """One model of the served artifact: the module, its temperature, its ensemble weight and its OOD detector."""

    module: nn.Module
    temperature: float
    weight: float
    detector: Any = None


class _Replay(nn.Module):
    """Hands the OOD scorer the features and logits a batch already computed (one slice, in order)."""

    def __init__(self, features: torch.Tensor, logits: torch.Tensor) -> None:
        super().__init__()
        self.cached = (features, logits)

    def forward_with_features(self, x: torch.Tensor, meta: torch.Tensor | None = None
                              ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.cached


class FastPath:
    """``predict(batch, tta, members)`` → ``(probs (N, C), OODResult | None)`` for uint8 ``(N, H, W, 3)`` images."""

    def __init__(self, predictor: Any, *, onnx: bool = True, threads: int = 0, fused: bool = True) -> None:
        self.predictor = predictor
        self.prep = predictor.prep
        model = predictor.model
        # metadata fusion and site adaptation (its output is not its members' logits) take the general path
        self.general = not fused or getattr(model, "metadata_spec", None) is not None or isinstance(model, SiteAdapted)
        self.members = _members(model, self.prep.temperature)
        if onnx and not self.general:  # the general path keeps the loaded model as it is
            self.members = [_with_onnx(m, source, threads) for m, source in
                            zip(self.members, _sources(predictor.card, len(self.members)), strict=True)]
        elif not self.general:
            self.members = [_with_threads(m, threads) for m in self.members]
        self.ensemble = isinstance(model, Ensemble)
        self.backend = "onnx" if all(_is_onnx(m.module) for m in self.members) else predictor.backend
        cascade = getattr(self.prep, "cascade", None)
        self.set_cascade(CascadeRule.from_dict(cascade) if cascade and not self.general else None)

    @property
    def n_members(self) -> int:
        return len(self.members)

    def predict(self, batch: np.ndarray, tta: str, members: Sequence[int] | None = None,
                metadata: Sequence[dict | None] | None = None,
                features_out: list[np.ndarray] | None = None, escalated_out: list[int] | None = None
                ) -> tuple[np.ndarray, OODResult | None]:
        """``tta``: a TTA policy, or ``cascade`` (the model's :class:`CascadeRule`; ``escalated_out`` receives how
        many images it sent to the full policy). ``features_out``: receives the first member's features ``(N, F)``
        of the identity view (the shift monitor's input; the fast engine only)."""
        if self.general:
            if tta == CASCADE:
                self.require_cascade()
            return self._general(batch, tta, metadata)
        chosen = [self.members[i] for i in members] if members is not None else self.members
        if tta == CASCADE:
            probs, replays = self._cascade(batch, chosen, escalated_out)
        else:
            probs, replays = self._probs(batch, get_tta(tta), chosen)
        if features_out is not None:
            features_out.append(np.asarray(replays[0].cached[0].float()))
        return probs, self._ood(batch, chosen, replays)

    def _probs(self, batch: np.ndarray, views: Sequence[Any], chosen: list[Member], replay: bool = True
               ) -> tuple[np.ndarray, list[_Replay]]:
        """Members' weighted, temperature-scaled probabilities averaged over ``views``, and (``replay``) each member's
        identity-view features and logits for the OOD detector."""
        pixels = torch.from_numpy(np.require(batch, requirements=["C", "W"]))  # a writable, contiguous copy if needed
        x = to_model_input(pixels.permute(0, 3, 1, 2), self.prep.mean, self.prep.std)
        stacked = torch.cat([view(x) for view in views]) if len(views) > 1 else views[0](x)
        n, total = len(batch), sum(m.weight for m in chosen)
        identity_first = replay and _is_identity(views[0])
        probs, replays = 0.0, []
        with torch.inference_mode():
            for m in chosen:
                features, logits = forward_with_features(m.module, stacked)
                logits = logits.float().reshape(len(views), n, -1)
                probs = probs + (m.weight / total) * (logits / m.temperature).softmax(-1).mean(0)
                if not replay:
                    continue
                if identity_first:
                    replays.append(_Replay(features[:n], logits[0]))
                else:  # a policy without the identity view first: the detector reads the image as is
                    replays.append(_Replay(*forward_with_features(m.module, x)))
        return np.asarray(probs), replays

    def _cascade(self, batch: np.ndarray, chosen: list[Member], escalated_out: list[int] | None
                 ) -> tuple[np.ndarray, list[_Replay]]:
        """The first policy on every image; the rest of the full policy's views on the escalated ones only."""
        rule = self.require_cascade()
        first, rest = self._cascade_views
        probs, replays = self._probs(batch, first, chosen)
        escalated = rule.escalate(probs, self.prep.class_names, self.prep.thresholds)
        if escalated.any() and rest:  # the OOD verdict is read from the first call: no replay of the rest
            more, _ = self._probs(batch[escalated], rest, chosen, replay=False)
            probs[escalated] = (len(first) * probs[escalated] + len(rest) * more) / (len(first) + len(rest))
        if escalated_out is not None:
            escalated_out.append(int(escalated.sum()))
        return probs, replays

    def set_cascade(self, rule: CascadeRule | None) -> None:
        """Serve ``rule`` for ``tta="cascade"`` (None: none)."""
        self.cascade = rule
        self._cascade_views = rule.views() if rule is not None else ((), ())

    def require_cascade(self) -> CascadeRule:
        """The model's cascade rule, or a clear refusal naming how to get one."""
        if self.general:
            raise ConfigError("the test-time cascade needs the fast engine (--engine fast) and an image-only, "
                              "unadapted model")
        if self.cascade is None:
            raise ConfigError("this model stores no test-time cascade rule (choose tta none, flips or d4; "
                              "benchmarks/fast_path.py --record fits one on validation for the built-in model)")
        return self.cascade

    def _ood(self, batch: np.ndarray, chosen: list[Member], replays: list[_Replay]) -> OODResult | None:
        detectors = [m.detector for m in chosen]
        if not detectors or any(d is None for d in detectors):
            return None
        if self.ensemble:
            holder: nn.Module = nn.Module()
            holder.members = replays  # what EnsembleDetector.score_images walks
            holder.ood_detector = EnsembleDetector(detectors)
        else:
            holder = replays[0]
            holder.ood_detector = detectors[0]
        return score_images(holder, batch, self.prep.mean, self.prep.std, batch_size=len(batch))

    def _general(self, batch: np.ndarray, tta: str, metadata: Sequence[dict | None] | None
                 ) -> tuple[np.ndarray, OODResult | None]:
        spec = getattr(self.predictor.model, "metadata_spec", None)
        encoded = None if spec is None else spec.encode(list(metadata) if metadata is not None else [None] * len(batch))
        probs = predict_probs(self.predictor.model, batch, self.prep.mean, self.prep.std,
                              temperature=self.prep.temperature, tta=tta, batch_size=len(batch), metadata=encoded)
        return probs, self.predictor.ood_scores(batch, metadata)


def _members(model: nn.Module, temperature: float) -> list[Member]:
    if isinstance(model, Ensemble):
        weights = model.weights or (1.0,) * len(model.members)
        detector = getattr(model, "ood_detector", None)
        detectors = detector.detectors if isinstance(detector, EnsembleDetector) else [None] * len(model.members)
        return [Member(m, t, w, d) for m, t, w, d in
                zip(model.members, model.temperatures, weights, detectors, strict=True)]
    return [Member(model, temperature, 1.0, getattr(model, "ood_detector", None))]


def _sources(card: Any, n: int) -> list[Path | None]:
    """Each member's ``model.pt`` path (from the card), or None when unknown."""
    sources = [m.get("source") for m in card.members] if card is not None and card.members else \
        [getattr(card, "source", None)]
    return [Path(s) if s else None for s in sources] if len(sources) == n else [None] * n


def _is_onnx(module: nn.Module) -> bool:
    return isinstance(module.inner if isinstance(module, ResizedInput) else module, OnnxModule)


def _with_onnx(member: Member, source: Path | None, threads: int) -> Member:
    """The member run by ONNX Runtime from the ``model.onnx`` beside its ``model.pt`` (a release ships both)."""
    inner = member.module.inner if isinstance(member.module, ResizedInput) else member.module
    path = inner.path if isinstance(inner, OnnxModule) else (
        source.with_suffix(".onnx") if source is not None and source.suffix == ".pt" else None)
    if path is None or not path.is_file():
        return _with_threads(member, threads)
    session = OnnxModule(path, threads=threads, metadata_spec=getattr(inner, "metadata_spec", None))
    module = ResizedInput(session, member.module.size) if isinstance(member.module, ResizedInput) else session
    logger.info("Batched inference runs %s with ONNX Runtime (%s threads)", path, threads or "all")
    return Member(module.eval(), member.temperature, member.weight, member.detector)


def _with_threads(member: Member, threads: int) -> Member:
    return _with_onnx(member, None, threads) if _is_onnx(member.module) else member


def _is_identity(view: Any) -> bool:
    return same_view(view, lambda x: x)


__all__ = ["CASCADE", "FastPath", "Member"]
