"""Source-shortcut check: can a quick classifier tell a merged dataset's sources apart from the images alone?

If it can, much better than chance, a diagnosis model may learn "which camera / clinic" instead of "which lesion"
(the VAE study saw exactly this after merging two sources). The check fits a logistic regression on cheap image
features (down-sampled pixels, colour statistics, or frozen-backbone embeddings) with lesion-grouped, stratified
cross-validation and compares its balanced accuracy with chance (1 / number of sources) and with a *label-only*
baseline that predicts the source from the diagnosis: a difference in class mix alone already makes sources
partly predictable, so the image result should be read against that baseline too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import StratifiedGroupKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from torch.nn import functional as F

from lesionlab.data.prepare import PreparedData
from lesionlab.data.splits import _quiet_sklearn, split_groups
from lesionlab.data.table import DatasetError
from lesionlab.registry import Registry

logger = logging.getLogger(__name__)

#: ``(uint8 images (N, H, W, 3)) -> (N, D)`` features for the source classifier.
FEATURIZERS: Registry[Callable[[np.ndarray], np.ndarray]] = Registry("source-check featurizer")


@FEATURIZERS.register("pixels", help="area-averaged 16x16 RGB thumbnails (768 values)")
def pixel_features(images: np.ndarray, size: int = 16) -> np.ndarray:
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0
    return F.adaptive_avg_pool2d(x, size).flatten(1).numpy()


@FEATURIZERS.register("colour-stats", help="per-channel mean, std and 5/25/50/75/95th percentiles (21 values)")
def colour_features(images: np.ndarray) -> np.ndarray:
    x = np.asarray(images, dtype=np.float32).reshape(len(images), -1, 3) / 255.0
    q = np.percentile(x, [5, 25, 50, 75, 95], axis=1).transpose(1, 0, 2).reshape(len(images), -1)
    return np.concatenate([x.mean(1), x.std(1), q], axis=1)


@dataclass(frozen=True)
class SourceCheckResult:
    """Cross-validated source prediction vs chance; ``warning`` is set when it is much better than chance."""

    sources: dict[str, int]
    features: str
    images: int
    folds: int
    balanced_accuracy: float
    chance: float
    label_only_balanced_accuracy: float
    margin: float
    warning: bool
    message: str

    def to_dict(self) -> dict:
        return asdict(self)


def _cv_balanced_accuracy(x: np.ndarray, y: np.ndarray, groups: np.ndarray, folds: int, seed: int) -> float:
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, class_weight="balanced", C=0.1))
    cv = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    with _quiet_sklearn():
        pred = cross_val_predict(model, x, y, groups=groups, cv=cv)
    return float(balanced_accuracy_score(y, pred))


def source_shortcut_check(data: PreparedData, *, features: str = "pixels", folds: int = 5, margin: float = 0.15,
                          max_images: int = 4000, seed: int = 0) -> SourceCheckResult:
    """Predict ``table.source`` from the cached images (lesion-grouped CV); warn when ≥ chance + ``margin``.

    At most ``max_images`` rows (a seeded random subset) keep the check to seconds. Needs at least two sources.
    """
    table = data.table
    counts = table["source"].value_counts()
    if len(counts) < 2:
        raise DatasetError(f"the source check needs at least two sources; this table has {counts.to_dict()}")
    featurize = FEATURIZERS.get(features)
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(table), size=min(max_images, len(table)), replace=False))
    sub = table.iloc[pick]
    y = sub["source"].astype(str).to_numpy()
    groups = split_groups(sub).to_numpy()
    folds = int(min(folds, pd.Series(y).value_counts().min(), len(set(groups))))
    if folds < 2:
        raise DatasetError("too few images per source for a cross-validated source check (need 2 per source)")
    x = featurize(np.asarray(data.images[data.rows[pick]]))
    bal = _cv_balanced_accuracy(x, y, groups, folds, seed)
    labels = OneHotEncoder(handle_unknown="ignore").fit_transform(sub[["label"]].astype(str)).toarray()
    label_only = _cv_balanced_accuracy(labels, y, groups, folds, seed)
    chance = 1.0 / len(counts)
    warn = bal >= chance + margin
    message = (f"A logistic regression on {features} tells the {len(counts)} sources apart with balanced accuracy "
               f"{bal:.3f} (chance {chance:.3f}; from the diagnosis alone {label_only:.3f}). ")
    message += ("WARNING: the sources are distinguishable from the images; a classifier may use acquisition "
                "differences as a shortcut. Compare per-source metrics and consider per-source normalisation."
                if warn else "No strong source shortcut detected at this margin.")
    (logger.warning if warn else logger.info)(message)
    return SourceCheckResult({str(k): int(v) for k, v in counts.items()}, features, len(pick), folds, bal, chance,
                             label_only, margin, warn, message)


def check_if_merged(data: PreparedData, **kwargs: Any) -> SourceCheckResult | None:
    """:func:`source_shortcut_check` when the table has several sources (e.g. ``data.dataset: merged``), else None."""
    if data.table["source"].nunique() < 2:
        return None
    try:
        return source_shortcut_check(data, **kwargs)
    except ValueError as exc:  # too few images per source for cross-validation: say so, do not fail the run
        logger.warning("Source-shortcut check skipped: %s", exc)
        return None
