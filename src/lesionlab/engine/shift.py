"""``lesionlab shift``: before any label arrives, is a clinic's image set unlike what the model was judged on?

For each target (a folder of images, or a registered dataset's images) against a reference (by default the
HAM10000 images the model never trained or validated on, i.e. its test split): the predicted class mix, the
OOD-flag rate and a two-sample MMD test on the model's features (:mod:`lesionlab.evaluation.shift`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from lesionlab.config import DataConfig
from lesionlab.data.datasets import load_dataset
from lesionlab.data.prepare import stratified_subsample
from lesionlab.data.table import IMAGE_EXTENSIONS
from lesionlab.evaluation.shift import ShiftSummary, shift_summary
from lesionlab.inference.ood import extract_features
from lesionlab.inference.quality import NotAssessableError
from lesionlab.serving.predictor import Predictor

logger = logging.getLogger(__name__)


def model_features(predictor: Predictor, arrays: np.ndarray) -> np.ndarray:
    """Pooled backbone features of preprocessed images (an ensemble's members' features side by side)."""
    members = getattr(predictor.model, "members", None) or [predictor.model]
    return np.concatenate([extract_features(m, arrays, predictor.prep.mean, predictor.prep.std, batch_size=64)[0]
                           for m in members], axis=1)


def read_images(predictor: Predictor, paths: Sequence[str | Path], what: str) -> np.ndarray:
    """Preprocessed uint8 images; those the quality gate refuses are left out (counted in the log)."""
    arrays, refused = [], 0
    for p in tqdm(paths, desc=f"Reading {what}", unit="img", leave=False):
        try:
            arrays.append(predictor.preprocess(p))
        except NotAssessableError:
            refused += 1
    if refused:
        logger.info("%s: %d of %d images refused by the input quality gate", what, refused, len(paths))
    if not arrays:
        raise ValueError(f"{what}: no assessable image")
    return np.stack(arrays)


def target_paths(target: str, data_root: str | None) -> list[Path]:
    """A folder's image files, or a registered dataset's images."""
    path = Path(target)
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    return [Path(p) for p in load_dataset(DataConfig(dataset=target, root=data_root)).table["path"]]


def reference_paths(predictor: Predictor, reference: str, data_root: str | None, max_images: int) -> list[Path]:
    """The reference dataset's images the model never trained or validated on (a stratified subsample)."""
    table = load_dataset(DataConfig(dataset=reference, root=data_root)).table
    unseen = np.array([not predictor.seen_reason(i, lesion)[0] for i, lesion in
                       zip(table["image_id"], table["lesion_id"], strict=True)])
    table = table[unseen].reset_index(drop=True)
    table = table[stratified_subsample(table, max_images, seed=0)] if len(table) > max_images else table
    return [Path(p) for p in table["path"]]


def _profile(predictor: Predictor, arrays: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    probs = predictor.predict_arrays(arrays)
    ood = predictor.ood_scores(arrays)
    return model_features(predictor, arrays), probs, None if ood is None else np.asarray(ood.ood)


def shift_report(model: str | Path | None, targets: Sequence[str], *, reference: str = "ham10000",
                 data_root: str | None = None, max_images: int = 400, permutations: int = 500,
                 out: str | Path | None = None, tta: str | None = None) -> list[ShiftSummary]:
    """One :class:`ShiftSummary` per target against ``reference``; written to ``out/shift.json`` and ``.csv``.
    ``tta`` overrides the model's test-time augmentation for the class mix (``none``: fastest)."""
    predictor = Predictor.load(model)
    if tta is not None:
        predictor.prep = replace(predictor.prep, tta=tta)
    rng = np.random.default_rng(0)
    ref = _profile(predictor, read_images(predictor, reference_paths(predictor, reference, data_root, max_images),
                                          reference))
    summaries = []
    for target in targets:
        paths = target_paths(target, data_root)
        if len(paths) > max_images:
            paths = [paths[i] for i in sorted(rng.choice(len(paths), max_images, replace=False))]
        feats, probs, ood = _profile(predictor, read_images(predictor, paths, target))
        summaries.append(shift_summary(target, f"{reference} (unseen by the model)", feats, ref[0], probs, ref[1],
                                       predictor.class_names, ood=ood, ref_ood=ref[2], permutations=permutations))
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "shift.json").write_text(json.dumps([s.to_dict() for s in summaries], indent=2))
        pd.DataFrame([{k: v for k, v in s.to_dict().items() if not k.endswith("mix")} for s in summaries]).to_csv(
            out / "shift.csv", index=False)
    return summaries
