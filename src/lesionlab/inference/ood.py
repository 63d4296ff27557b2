"""Out-of-distribution (OOD) detection on the classifier's penultimate (pooled backbone) features.

A detector is fitted on the *training* split's features, and its threshold is calibrated on the *validation*
split: the ``coverage`` quantile of the validation images' scores, so that share of in-distribution lesions pass.
Scores are oriented "higher = more unusual". Methods (registered in :data:`OOD_METHODS`):

- ``knn``: distance to the k-th nearest L2-normalised training feature (Sun et al., "Out-of-Distribution Detection
  with Deep Nearest Neighbors", ICML 2022), on a seeded subsample of at most ``KNN_BANK`` training images. The
  default, chosen by measurement (``docs/results/ood.md``): the only one of the three meeting far-OOD AUROC ≥ 0.95
  on both a from-scratch and an ImageNet-pretrained backbone.
- ``mahalanobis``: distance to the closest class mean under a shared, Ledoit-Wolf-shrunk covariance
  (Lee et al., "A Simple Unified Framework for Detecting Out-of-Distribution Samples and Adversarial Attacks",
  NeurIPS 2018).
- ``energy``: the negative free energy ``-logsumexp(logits)`` (Liu et al., "Energy-based Out-of-distribution
  Detection", NeurIPS 2020); needs no features.

The fitted detector travels with the model: in ``model.pt`` (key ``ood``), in the ONNX sidecar JSON (arrays as
base64) and per member in ensembles.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from lesionlab.data.transforms import to_model_input
from lesionlab.registry import Registry

logger = logging.getLogger(__name__)

DEFAULT_METHOD = "knn"
DEFAULT_COVERAGE = 0.975
KNN_BANK, KNN_K = 4000, 10
KNN_COMPACT_BANK = 600  # the built-in model's bank: its folder stays under 25 MB with the ONNX sidecar
KNN_TINY_BANK = 300  # per member of a larger built-in ensemble (the ensemble averages its members' scores)
INT8_UNIT = 127.0  # knn-compact stores its unit-vector bank as int8 (value / 127)
FORMAT = "lesionlab-ood/1"


@dataclass(frozen=True)
class OODMethod:
    """``fit(features, logits, labels) -> state``; ``score(state, features, logits) -> (N,)``, higher = more OOD."""

    fit: Callable[[np.ndarray, np.ndarray, np.ndarray], dict[str, np.ndarray]]
    score: Callable[[Mapping[str, np.ndarray], np.ndarray, np.ndarray], np.ndarray]
    uses_features: bool = True


OOD_METHODS: Registry[OODMethod] = Registry("OOD method")


def _fit_mahalanobis(features: np.ndarray, logits: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    from sklearn.covariance import LedoitWolf

    f = np.asarray(features, dtype=np.float64)
    classes = np.unique(labels)
    means = np.stack([f[labels == c].mean(0) for c in classes])
    centred = f - means[np.searchsorted(classes, labels)]
    precision = LedoitWolf(assume_centered=True).fit(centred).precision_
    return {"means": means.astype(np.float32), "precision": precision.astype(np.float32)}


def _score_mahalanobis(state: Mapping[str, np.ndarray], features: np.ndarray, logits: np.ndarray) -> np.ndarray:
    f = torch.as_tensor(np.asarray(features, dtype=np.float32))
    means = torch.as_tensor(state["means"])
    precision = torch.as_tensor(state["precision"])
    diff = f[:, None, :] - means[None]  # (N, C, F)
    dist = torch.einsum("ncf,fg,ncg->nc", diff, precision, diff)
    return dist.min(dim=1).values.numpy().astype(np.float64)


def _fit_energy(features: np.ndarray, logits: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    return {}


def _score_energy(state: Mapping[str, np.ndarray], features: np.ndarray, logits: np.ndarray) -> np.ndarray:
    return -torch.logsumexp(torch.as_tensor(np.asarray(logits, dtype=np.float64)), dim=1).numpy()


def _normalise(f: np.ndarray) -> np.ndarray:
    f = np.asarray(f, dtype=np.float32)
    return f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)


def _knn_fitter(bank_size: int, int8: bool = False
                ) -> Callable[[np.ndarray, np.ndarray, np.ndarray], dict[str, np.ndarray]]:
    """A kNN bank of at most ``bank_size`` normalised training features: float16, or with ``int8`` unit-vector
    components stored as round(127 x), half the bytes (a distance moves by < 0.01 of a typical kNN distance)."""
    def fit(features: np.ndarray, logits: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
        bank = _normalise(features)
        if len(bank) > bank_size:
            bank = bank[np.sort(np.random.default_rng(0).choice(len(bank), bank_size, replace=False))]
        stored = np.round(bank * INT8_UNIT).astype(np.int8) if int8 else bank.astype(np.float16)
        return {"bank": stored, "k": np.array(min(KNN_K, len(bank)))}

    return fit


def _bank(state: Mapping[str, np.ndarray]) -> np.ndarray:
    bank = np.asarray(state["bank"])
    return bank.astype(np.float32) / INT8_UNIT if bank.dtype == np.int8 else bank.astype(np.float32)


_fit_knn = _knn_fitter(KNN_BANK)


def _score_knn(state: Mapping[str, np.ndarray], features: np.ndarray, logits: np.ndarray) -> np.ndarray:
    bank = torch.as_tensor(_bank(state))
    q = torch.as_tensor(_normalise(features))
    d = torch.cdist(q, bank)
    k = int(np.asarray(state["k"]).reshape(-1)[0])
    return d.kthvalue(k, dim=1).values.numpy().astype(np.float64)


OOD_METHODS.add("mahalanobis", OODMethod(_fit_mahalanobis, _score_mahalanobis),
                help="min class-conditional Mahalanobis distance, shared shrunk covariance (Lee et al. 2018)")
OOD_METHODS.add("energy", OODMethod(_fit_energy, _score_energy, uses_features=False),
                help="negative free energy of the logits (Liu et al. 2020)")
OOD_METHODS.add("knn", OODMethod(_fit_knn, _score_knn),
                help=f"distance to the {KNN_K}th nearest normalised training feature (Sun et al. 2022)")
OOD_METHODS.add("knn-compact", OODMethod(_knn_fitter(KNN_COMPACT_BANK, int8=True), _score_knn),
                help=f"knn with a {KNN_COMPACT_BANK}-image int8 bank (~0.8 MB): for models shipped under a size budget")
OOD_METHODS.add("knn-tiny", OODMethod(_knn_fitter(KNN_TINY_BANK, int8=True), _score_knn),
                help=f"knn with a {KNN_TINY_BANK}-image int8 bank (~0.4 MB): for each member of an ensemble shipped "
                "under a size budget")


@dataclass
class OODDetector:
    """A fitted method, its threshold (score > threshold → OOD) and how the threshold was chosen."""

    method: str
    state: dict[str, np.ndarray]
    threshold: float
    reference: float  # median validation score: normalised scores are 0 there and 1 at the threshold
    coverage: float
    rule: str
    fitted_on: dict[str, Any] = field(default_factory=dict)

    def score(self, features: np.ndarray, logits: np.ndarray) -> np.ndarray:
        return OOD_METHODS.get(self.method).score(self.state, features, logits)

    def normalised(self, scores: np.ndarray) -> np.ndarray:
        """``(score - median ID) / (threshold - median ID)``: comparable across detectors, > 1 means OOD."""
        return (np.asarray(scores, dtype=np.float64) - self.reference) / max(self.threshold - self.reference, 1e-12)

    def to_dict(self, arrays: str = "numpy") -> dict[str, Any]:
        """``arrays="numpy"`` for ``model.pt``; ``"base64"`` for JSON (the ONNX sidecar)."""
        state = ({k: _encode(v) for k, v in self.state.items()} if arrays == "base64" else dict(self.state))
        return {"format": FORMAT, "method": self.method, "state": state, "threshold": self.threshold,
                "reference": self.reference, "coverage": self.coverage, "rule": self.rule,
                "fitted_on": self.fitted_on}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OODDetector:
        if data.get("format") != FORMAT:
            raise ValueError(f"not a LesionLab OOD detector (expected format {FORMAT})")
        state = {k: _decode(v) if isinstance(v, dict) else np.asarray(v) for k, v in data["state"].items()}
        OOD_METHODS.get(data["method"])  # unknown methods fail here, listing the valid ones
        return cls(str(data["method"]), state, float(data["threshold"]), float(data["reference"]),
                   float(data["coverage"]), str(data["rule"]), dict(data.get("fitted_on") or {}))


def _encode(a: np.ndarray) -> dict[str, Any]:
    shape = list(np.shape(a))  # before ascontiguousarray, which turns 0-d arrays into 1-d ones
    a = np.ascontiguousarray(a)
    return {"dtype": str(a.dtype), "shape": shape, "base64": base64.b64encode(a.tobytes()).decode()}


def _decode(d: Mapping[str, Any]) -> np.ndarray:
    return np.frombuffer(base64.b64decode(d["base64"]), dtype=d["dtype"]).reshape(d["shape"]).copy()


def fit_ood_detector(method: str, train: tuple[np.ndarray, np.ndarray, np.ndarray],
                     val: tuple[np.ndarray, np.ndarray], coverage: float = DEFAULT_COVERAGE) -> OODDetector:
    """Fit ``method`` on training ``(features, logits, labels)``; threshold = the ``coverage`` quantile of the
    validation ``(features, logits)`` scores."""
    if not 0 < coverage < 1:
        raise ValueError(f"OOD coverage must lie in (0, 1), got {coverage}")
    spec = OOD_METHODS.get(method)
    features, logits, labels = train
    if len(features) < 2 or len(val[0]) < 2:
        raise ValueError(f"an OOD detector needs training and validation images (got {len(features)} and "
                         f"{len(val[0])})")
    state = spec.fit(np.asarray(features), np.asarray(logits), np.asarray(labels))
    val_scores = spec.score(state, *val)
    threshold = float(np.quantile(val_scores, coverage))
    reference = float(np.median(val_scores))
    rule = (f"{method} score > {threshold:.4g}: the {100 * coverage:g}th percentile of the {len(val_scores)} "
            f"validation images' scores (detector fitted on {len(features)} training images)")
    return OODDetector(method, state, threshold, reference, coverage, rule,
                       {"train_images": len(features), "val_images": len(val_scores),
                        "val_flagged": float((val_scores > threshold).mean())})


def forward_with_features(model: nn.Module, x: torch.Tensor, meta: torch.Tensor | None = None
                          ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(features, logits)`` of one batch: the pooled backbone features and the classifier's logits."""
    if hasattr(model, "forward_with_features"):  # ONNX Runtime modules exported with a features output
        return model.forward_with_features(x, meta)
    features = model.features(x)
    return features, model.classify_features(features, meta)


@torch.inference_mode()
def extract_features(model: nn.Module, images: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...], *,
                     indices: np.ndarray | None = None, batch_size: int = 256, device: str | torch.device = "cpu",
                     metadata: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(features (N, F), logits (N, C))`` of uint8 ``(N, H, W, 3)`` images, identity view (no TTA)."""
    model.eval()
    idx = np.arange(len(images)) if indices is None else np.asarray(indices)
    feats, logits = [], []
    for start in range(0, len(idx), batch_size):
        batch = torch.from_numpy(np.ascontiguousarray(images[idx[start:start + batch_size]])).permute(0, 3, 1, 2)
        x = to_model_input(batch.to(device), mean, std)
        meta = None if metadata is None else torch.as_tensor(
            np.asarray(metadata[start:start + batch_size], dtype=np.float32), device=x.device)
        f, z = forward_with_features(model, x, meta)
        feats.append(f.float().cpu().numpy())
        logits.append(z.float().cpu().numpy())
    if not feats:
        return np.zeros((0, 0), np.float32), np.zeros((0, 0), np.float32)
    return np.concatenate(feats), np.concatenate(logits)


@dataclass(frozen=True)
class OODResult:
    """Per image: flagged, the raw score, the normalised score (1 = the threshold) and a sentence."""

    ood: np.ndarray
    score: np.ndarray
    normalised: np.ndarray
    reasons: list[str]


def score_images(model: nn.Module, images: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...], *,
                 device: str | torch.device = "cpu", metadata: np.ndarray | None = None,
                 batch_size: int = 64) -> OODResult | None:
    """Score preprocessed uint8 images with the detector(s) attached to ``model`` (``model.ood_detector``: one
    detector, or an :class:`EnsembleDetector` for ensembles); ``None`` when the model carries none."""
    detector = getattr(model, "ood_detector", None)
    if detector is None:
        return None
    if isinstance(detector, EnsembleDetector):
        return detector.score_images(model, images, mean, std, device=device, metadata=metadata,
                                     batch_size=batch_size)
    f, z = extract_features(model, images, mean, std, batch_size=batch_size, device=device, metadata=metadata)
    raw = detector.score(f, z)
    norm = detector.normalised(raw)
    return OODResult(raw > detector.threshold, raw, norm, [_reason(detector.method, s, detector.threshold, n)
                                                           for s, n in zip(raw, norm, strict=True)])


def _reason(method: str, score: float, threshold: float, norm: float) -> str:
    if score > threshold:
        return (f"out of distribution: {method} score {score:.4g} exceeds the threshold {threshold:.4g} chosen on "
                "validation lesions; the image is unlike the training images (not a dermatoscopic lesion?)")
    return f"in distribution: {method} score {score:.4g} is within the threshold {threshold:.4g}"


class EnsembleDetector:
    """Members' detectors: the ensemble's score is the mean of the members' normalised scores (OOD above 1)."""

    method = "ensemble"
    threshold = 1.0

    def __init__(self, detectors: list[OODDetector]) -> None:
        self.detectors = detectors

    @property
    def rule(self) -> str:
        methods = sorted({d.method for d in self.detectors})
        return (f"mean over {len(self.detectors)} members of the normalised {'/'.join(methods)} score "
                "(0 = median validation lesion, 1 = the member's threshold) > 1")

    def score_images(self, model: nn.Module, images: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...],
                     *, device: str | torch.device = "cpu", metadata: np.ndarray | None = None,
                     batch_size: int = 64) -> OODResult:
        norms = []
        for member, det in zip(model.members, self.detectors, strict=True):
            f, z = extract_features(member, images, mean, std, batch_size=batch_size, device=device, metadata=metadata)
            norms.append(det.normalised(det.score(f, z)))
        norm = np.mean(norms, axis=0)
        reasons = [(f"out of distribution: the members' mean normalised score {n:.2f} exceeds 1 (each member's "
                    "threshold chosen on its validation lesions); the image is unlike the training images")
                   if n > 1 else f"in distribution: mean normalised score {n:.2f} ≤ 1" for n in norm]
        return OODResult(norm > 1, norm, norm, reasons)


def summary(detector: OODDetector | EnsembleDetector | None) -> dict[str, Any]:
    """What ``GET /v1/model`` reports about the detector."""
    if detector is None:
        return {"available": False, "rule": "not available: this model stores no OOD detector; fit one with "
                "'lesionlab fit-ood RUN'"}
    if isinstance(detector, EnsembleDetector):
        return {"available": True, "method": "ensemble", "threshold": 1.0, "rule": detector.rule,
                "members": [{"method": d.method, "threshold": d.threshold} for d in detector.detectors]}
    return {"available": True, "method": detector.method, "threshold": detector.threshold, "rule": detector.rule,
            "coverage": detector.coverage, "fitted_on": detector.fitted_on}
