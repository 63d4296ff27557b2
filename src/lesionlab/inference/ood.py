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
- ``knn-oe``: a 300-image kNN bank averaged with a linear head that separates training lesions from non-lesion
  images (outlier exposure: Hendrycks et al., "Deep Anomaly Detection with Outlier Exposure", ICLR 2019, here a
  logistic regression on the frozen features). Fitted with :func:`fit_knn_oe`, which needs those images' features;
  the built-in model's detector (``benchmarks/ood_held_out_source.py``), chosen by held-out source:
  ``docs/results/ood-held-out-source.md``.

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
from lesionlab.errors import EvaluationInputError
from lesionlab.registry import Registry

logger = logging.getLogger(__name__)

DEFAULT_METHOD = "knn"
DEFAULT_COVERAGE = 0.975
KNN_BANK, KNN_K = 4000, 10
KNN_COMPACT_BANK = 600  # the built-in model's bank: its folder stays under 25 MB with the ONNX sidecar
OE_C = 1.0  # the outlier-exposure head's inverse L2 strength (knn-oe)
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


def _knn_distance(state: Mapping[str, np.ndarray], features: np.ndarray) -> np.ndarray:
    return _score_knn(state, features, np.zeros((len(features), 0)))


def head_input(features: np.ndarray, logits: np.ndarray, use_logits: bool = False) -> np.ndarray:
    """What the outlier-exposure head reads: the unit-length penultimate features, and with ``use_logits`` two
    output-layer summaries (the free energy ``logsumexp(logits)`` and the largest logit, both / 10)."""
    if not use_logits:
        return _normalise(features)
    z = torch.as_tensor(np.asarray(logits, dtype=np.float64))
    energy = torch.logsumexp(z, dim=1).numpy() if z.shape[1] else np.zeros(len(z))
    top = z.max(dim=1).values.numpy() if z.shape[1] else np.zeros(len(z))
    return np.hstack([_normalise(features), energy[:, None] / 10, top[:, None] / 10]).astype(np.float32)


def _score_knn_oe(state: Mapping[str, np.ndarray], features: np.ndarray, logits: np.ndarray) -> np.ndarray:
    """The mean of two normalised scores (0 = median validation lesion, 1 = its upper quantile): the kNN distance and
    the outlier-exposure head's logit."""
    knn_ref, head_ref = np.asarray(state["knn_ref"], np.float64), np.asarray(state["head_ref"], np.float64)
    knn = (_knn_distance(state, features) - knn_ref[0]) / max(knn_ref[1] - knn_ref[0], 1e-12)
    use_logits = bool(np.asarray(state.get("head_logits", 0)).reshape(-1)[0])
    head = head_input(features, logits, use_logits) @ np.asarray(state["head_w"], np.float32) + float(state["head_b"])
    head = (head.astype(np.float64) - head_ref[0]) / max(head_ref[1] - head_ref[0], 1e-12)
    return (knn + head) / 2


def _fit_knn_oe(features: np.ndarray, logits: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    raise EvaluationInputError("knn-oe learns from non-lesion images too (outlier exposure), which this fit does "
                               "not have: fit it with "
                               "lesionlab.inference.ood.fit_knn_oe(train, val, outliers, ...), as "
                               "benchmarks/ood_held_out_source.py does for the built-in model")


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
OOD_METHODS.add("knn-oe", OODMethod(_fit_knn_oe, _score_knn_oe),
                help="knn-tiny averaged with a linear outlier-exposure head on the features and logits (Sun et al. "
                "2022; Hendrycks et al. 2019): learns from non-lesion images as well")


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


def fit_knn_oe(train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray],
               outliers: tuple[np.ndarray, np.ndarray], outlier_groups: np.ndarray | None = None, *,
               coverage: float = DEFAULT_COVERAGE, bank_size: int = KNN_TINY_BANK, c: float = OE_C,
               use_logits: bool = False) -> OODDetector:
    """``knn-oe``: a kNN bank of training lesions (Sun et al. 2022) and a logistic-regression head that separates
    the training lesions from non-lesion ``outliers`` (outlier exposure, Hendrycks et al. 2019, here on the frozen
    features, with ``use_logits`` also two summaries of the logits), each normalised on the validation lesions,
    averaged; threshold = the ``coverage`` quantile of the validation lesions' averaged score. ``outlier_groups``
    (a source name per outlier) weighs every source the same, however many images it has.
    ``train``/``val``/``outliers`` are ``(features, logits)``."""
    from sklearn.linear_model import LogisticRegression

    if not 0 < coverage < 1:
        raise ValueError(f"OOD coverage must lie in (0, 1), got {coverage}")
    (f_tr, z_tr), (f_val, z_val), (f_out, z_out) = train, val, outliers
    if min(len(f_tr), len(f_val), len(f_out)) < 2:
        raise ValueError(f"knn-oe needs training lesions, validation lesions and outlier images (got {len(f_tr)}, "
                         f"{len(f_val)} and {len(f_out)})")
    groups = np.zeros(len(f_out)) if outlier_groups is None else np.asarray(outlier_groups)
    names, counts = np.unique(groups, return_counts=True)
    per_group = dict(zip(names.tolist(), (1.0 / (counts * len(names))).tolist(), strict=True))
    weights = np.r_[np.full(len(f_tr), 1.0 / len(f_tr)), [per_group[g] for g in groups.tolist()]]
    x = np.vstack([head_input(f_tr, z_tr, use_logits), head_input(f_out, z_out, use_logits)])
    y = np.r_[np.zeros(len(f_tr)), np.ones(len(f_out))]
    head = LogisticRegression(C=c, max_iter=5000).fit(x, y, sample_weight=weights * len(y))
    state = _knn_fitter(bank_size, int8=True)(f_tr, z_tr, np.zeros(len(f_tr)))
    state.update(head_w=head.coef_[0].astype(np.float32), head_b=np.array(head.intercept_[0], np.float32),
                 head_logits=np.array(int(use_logits), np.int8))
    upper = 0.5 + coverage / 2  # each part normalised between its validation median and this quantile
    knn_val = _knn_distance(state, f_val)
    head_val = head_input(f_val, z_val, use_logits) @ state["head_w"] + float(state["head_b"])
    state["knn_ref"] = np.array([np.median(knn_val), np.quantile(knn_val, upper)], np.float32)
    state["head_ref"] = np.array([np.median(head_val), np.quantile(head_val, upper)], np.float32)
    val_scores = _score_knn_oe(state, f_val, z_val)
    threshold, reference = float(np.quantile(val_scores, coverage)), float(np.median(val_scores))
    rule = (f"knn-oe score > {threshold:.4g}: the {100 * coverage:g}th percentile of the {len(val_scores)} validation "
            f"images' scores (kNN bank and outlier-exposure head fitted on {len(f_tr)} training images and "
            f"{len(f_out)} non-lesion images from {len(names)} sources)")
    return OODDetector("knn-oe", state, threshold, reference, coverage, rule,
                       {"train_images": len(f_tr), "val_images": len(val_scores), "outlier_images": len(f_out),
                        "outlier_sources": len(names), "val_flagged": float((val_scores > threshold).mean())})


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
                "'lesionlab ood fit RUN'"}
    if isinstance(detector, EnsembleDetector):
        return {"available": True, "method": "ensemble", "threshold": 1.0, "rule": detector.rule,
                "members": [{"method": d.method, "threshold": d.threshold} for d in detector.detectors]}
    return {"available": True, "method": detector.method, "threshold": detector.threshold, "rule": detector.rule,
            "coverage": detector.coverage, "fitted_on": detector.fitted_on}
