"""A site head: a clinic's labelled images refit the decision among the classes they cover, on the base model's
frozen features (a linear probe; the backbone is not changed).

The head is a multinomial logistic regression (scikit-learn) on the standardised pooled features of every member
(concatenated), fitted only on the classes the clinic has enough images of. Its output replaces the base model's
split of probability *within* those classes and leaves the others as the base model has them::

    p(c) = p_base(present) * p_head(c)   for c among the head's classes,   p(c) = p_base(c) otherwise,

so a diagnosis the clinic's images lack (a BCC at a melanoma clinic) keeps the base model's probability.
:func:`fit_site_head` picks the L2 strength by lesion-grouped cross-validation on the fitting images only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold, cross_val_predict
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

from lesionlab.data.splits import _quiet_sklearn
from lesionlab.inference.ood import forward_with_features

#: L2 strengths tried (scikit-learn's inverse ``C``): from a head that barely moves to a nearly free one.
C_GRID = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
#: The fewest images of a class for the head to learn it (fewer: the base model keeps deciding it).
MIN_HEAD_CLASS = 5


def features_and_logits(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Every member's pooled features, concatenated, and the model's output (an ensemble's combined
    log-probabilities, a single model's logits) from one pass per member."""
    members = getattr(model, "members", None)
    if members is None:
        return forward_with_features(model, x)
    pairs = [forward_with_features(m, x) for m in members]
    features = torch.cat([f.float() for f, _ in pairs], dim=-1)
    combine = getattr(model, "combine_member_logits", None)
    return features, combine([z for _, z in pairs]) if combine is not None else model(x)


class FeaturesAndOutput(nn.Module):
    """``cat(features, output)`` per image, so the TTA and batching code that reads logits reads both."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f, z = features_and_logits(self.model, x)
        return torch.cat([f.float(), z.float()], dim=-1)


@dataclass(frozen=True)
class SiteHeadWeights:
    """The fitted head: standardisation, one linear map per head class, and which model classes they are."""

    classes: np.ndarray  # (K,) indices into the model's classes
    mean: np.ndarray  # (F,)
    scale: np.ndarray  # (F,)
    coef: np.ndarray  # (K, F)
    intercept: np.ndarray  # (K,)
    c: float

    def save(self, path: str | Path) -> None:
        np.savez(path, classes=self.classes, mean=self.mean, scale=self.scale, coef=self.coef,
                 intercept=self.intercept, c=np.float64(self.c))

    @classmethod
    def load(cls, path: str | Path) -> SiteHeadWeights:
        with np.load(path) as z:
            return cls(z["classes"], z["mean"], z["scale"], z["coef"], z["intercept"], float(z["c"]))

    def log_probs(self, features: np.ndarray, base_log_probs: np.ndarray) -> np.ndarray:
        """Adapted log-probabilities ``(N, C)`` of NumPy arrays (fitting and cross-fitting use it)."""
        with torch.inference_mode():
            return SiteHead(self)(torch.from_numpy(features).float(), torch.from_numpy(base_log_probs).float()).numpy()


class SiteHead(nn.Module):
    """``log p`` over all classes from features ``(B, F)`` and the base model's log-probabilities ``(B, C)``."""

    def __init__(self, weights: SiteHeadWeights) -> None:
        super().__init__()
        self.register_buffer("classes", torch.as_tensor(weights.classes, dtype=torch.long))
        self.register_buffer("mean", torch.as_tensor(weights.mean, dtype=torch.float32))
        self.register_buffer("scale", torch.as_tensor(weights.scale, dtype=torch.float32))
        self.register_buffer("coef", torch.as_tensor(weights.coef, dtype=torch.float32))
        self.register_buffer("intercept", torch.as_tensor(weights.intercept, dtype=torch.float32))

    def forward(self, features: torch.Tensor, base_log_probs: torch.Tensor) -> torch.Tensor:
        z = ((features.float() - self.mean) / self.scale) @ self.coef.T + self.intercept
        present = base_log_probs[:, self.classes].logsumexp(dim=-1, keepdim=True)
        out = base_log_probs.float().clone()
        out[:, self.classes] = present + z.log_softmax(dim=-1)
        return out


def head_classes(y: np.ndarray) -> np.ndarray:
    """The classes with at least :data:`MIN_HEAD_CLASS` images (sorted model indices)."""
    values, counts = np.unique(y, return_counts=True)
    return values[counts >= MIN_HEAD_CLASS]


def _pipeline(c: float) -> Pipeline:
    return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=3000))


def _folds(t: np.ndarray, seed: int) -> StratifiedGroupKFold:
    """Up to 5 lesion-grouped folds (fewer when a class has fewer images)."""
    return StratifiedGroupKFold(n_splits=int(min(5, np.bincount(t).min())), shuffle=True, random_state=seed)


def _weights(pipe: Pipeline, classes: np.ndarray, c: float) -> SiteHeadWeights:
    scaler, lr = pipe[0], pipe[-1]
    coef, intercept = lr.coef_, lr.intercept_
    if len(classes) == 2:  # scikit-learn's binary model is one logit for the second class
        coef, intercept = np.vstack([np.zeros_like(coef), coef]), np.concatenate([[0.0], intercept])
    return SiteHeadWeights(classes.astype(np.int64), scaler.mean_.astype(np.float32),
                           scaler.scale_.astype(np.float32), coef.astype(np.float32), intercept.astype(np.float32),
                           float(c))


def fit_site_head(view_features: np.ndarray, base_view_log_probs: np.ndarray, y: np.ndarray, groups: np.ndarray, *,
                  grid: Sequence[float] = C_GRID, seed: int = 0) -> tuple[SiteHeadWeights, np.ndarray]:
    """Fit the head on labelled images' test-time views: ``view_features (V, N, F)``, the base model's
    ``base_view_log_probs (V, N, C)``, model class indices ``y``, lesion ``groups``. It learns only
    :func:`head_classes`, on their images' view-averaged features, with the L2 strength of the lowest
    lesion-grouped cross-validated log-loss. Returns the head and the out-of-fold adapted log-probabilities
    ``(V, N, C)`` of every image (each decided by a head that did not see its lesion), for an honest operating point.
    """
    classes = head_classes(y)
    if len(classes) < 2:
        raise ValueError(f"a site head needs two classes with at least {MIN_HEAD_CLASS} images each")
    mean_features = view_features.mean(axis=0)
    rows = np.flatnonzero(np.isin(y, classes))
    x, t, g = mean_features[rows], np.searchsorted(classes, y[rows]), np.asarray(groups)[rows]
    with _quiet_sklearn():
        cv = list(_folds(t, seed).split(x, t, g))
    best: tuple[float, float] | None = None
    for c in grid:
        proba = cross_val_predict(_pipeline(c), x, t, cv=cv, method="predict_proba")
        loss = float(-np.log(np.clip(proba[np.arange(len(t)), t], 1e-12, None)).mean())
        if best is None or loss < best[0]:
            best = (loss, c)
    assert best is not None
    c = best[1]
    head = _weights(_pipeline(c).fit(x, t), classes, c)

    def adapted(weights: SiteHeadWeights, idx: np.ndarray) -> np.ndarray:
        return np.stack([weights.log_probs(view_features[v, idx], base_view_log_probs[v, idx])
                         for v in range(len(view_features))])

    oof = np.empty_like(base_view_log_probs, dtype=np.float32)
    others = np.setdiff1d(np.arange(len(y)), rows)
    if len(others):  # images of classes the head does not learn: never a training row of it
        oof[:, others] = adapted(head, others)
    for fit, score in cv:
        oof[:, rows[score]] = adapted(_weights(_pipeline(c).fit(x[fit], t[fit]), classes, c), rows[score])
    return head, oof
