"""``lesionlab explain``: Grad-CAM of a run's held-out test split (CAM-in-lesion per class + gallery) or of given
image files (one overlay PNG each)."""

from __future__ import annotations

import datetime as _dt
import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from lesionlab.data.crops import CropFn, get_crop
from lesionlab.data.images import open_image
from lesionlab.engine.core.run_data import load_run, prepare_run_data
from lesionlab.errors import EvaluationInputError
from lesionlab.evaluation.explain import explain_images, load_masks, overlay
from lesionlab.inference.predict import predict_probs
from lesionlab.reports.depth_artifacts import write_gradcam
from lesionlab.reports.html import Report, image_html, table_html

logger = logging.getLogger(__name__)


#: Side of each panel of an overlay PNG: the model's input (often 32-64 px) is too small to look at.
DISPLAY_PX = 256


def display_pair(image: Image.Image, cam: np.ndarray, crop: CropFn, size: int) -> np.ndarray:
    """The image cropped like the model sees it but at ``size`` px, beside it the heat-map upsampled onto it."""
    big = np.asarray(crop(image, size), dtype=np.uint8)
    heat = Image.fromarray((np.clip(cam, 0, 1) * 255).astype(np.uint8)).resize((size, size), Image.BILINEAR)
    return np.concatenate([big, overlay(big, np.asarray(heat, dtype=np.float32) / 255.0)], axis=1)


def _out(run_root: Path, out_dir: str | Path | None) -> Path:
    directory = Path(out_dir) if out_dir else run_root / "explain" / f"{_dt.datetime.now():%Y%m%d-%H%M%S}"
    (directory / "figures").mkdir(parents=True, exist_ok=True)
    return directory


def explain_test_split(run_dir: str | Path, *, method: str | None = None, mask_dir: str | None = None,
                       max_images: int = 200, per_class: int = 3, data_root: str | None = None,
                       out_dir: str | Path | None = None) -> Path:
    """Grad-CAM of a class-balanced sample of the run's test split; ``cam_in_lesion.csv`` + gallery + report.
    ``method`` and ``mask_dir`` default to the run's ``eval.gradcam_method`` and ``eval.mask_dir``."""
    run = load_run(run_dir)
    cfg, data = prepare_run_data(run, data_root)
    method = method or cfg.eval.gradcam_method
    cfg = replace(cfg, eval=replace(cfg.eval, gradcam_images=max_images, gradcam_method=method,
                                    mask_dir=mask_dir or cfg.eval.mask_dir))
    test = data.indices("test")
    probs = predict_probs(run.model, data.images, run.prep.mean, run.prep.std, indices=data.rows[test],
                          batch_size=cfg.eval.batch_size, temperature=run.prep.temperature, tta=run.prep.tta)
    directory = _out(run.root, out_dir)
    by_class = write_gradcam(directory, run.model, data, test, probs, run.prep, cfg, per_class=per_class)
    report = Report(f"LesionLab Grad-CAM: {run.root.name}", f"{method} · held-out test split · "
                    f"{run.prep.image_size}px")
    if by_class is not None and (directory / "cam_in_lesion.csv").is_file():
        report.add("CAM in lesion per class", table_html(by_class) +
                   "<p class='muted'>Share of the heat-map mass inside the lesion mask (1 = all inside), mean per true "
                   "class over the explained images; NaN where no mask was found.</p>")
    report.add("Gallery", image_html(directory / "figures" / "gradcam_gallery.png", "Grad-CAM gallery"))
    report.write(directory / "report.html")
    return directory


def explain_files(run_dir: str | Path, paths: Sequence[Path], *, method: str | None = None,
                  mask_dir: str | None = None, out_dir: str | Path | None = None) -> Path:
    """One ``<stem>_<method>.png`` overlay per image, and ``explanations.csv`` (prediction, CAM-in-lesion).
    ``method`` defaults to the run's ``eval.gradcam_method`` (Grad-CAM where the run has no config)."""
    if not paths:
        raise EvaluationInputError("no images given")
    run = load_run(run_dir)
    if method is None:
        try:
            method = run.config().eval.gradcam_method
        except EvaluationInputError:  # a bare model.pt: no config beside it
            method = "gradcam"
    prep = run.prep
    crop = get_crop(prep.crop)
    images = np.stack([np.asarray(crop(open_image(p), prep.image_size), dtype=np.uint8) for p in paths])
    probs = predict_probs(run.model, images, prep.mean, prep.std, temperature=prep.temperature, tta=prep.tta)
    ids = [Path(p).stem for p in paths]
    masks = None
    if mask_dir:
        masks, _ = load_masks(ids, mask_dir, prep.crop, prep.image_size)
    ex = explain_images(run.model, images, prep.mean, prep.std, ids, probs.argmax(axis=1), probs, prep.class_names,
                        method=method, masks=masks)
    directory = _out(run.root, out_dir)
    size = max(DISPLAY_PX, prep.image_size)
    for path, image_id, cam in zip(paths, ids, ex.cams, strict=True):
        Image.fromarray(display_pair(open_image(path), cam, crop, size)).save(directory / f"{image_id}_{method}.png")
    frame = ex.frame.drop(columns=["truth", "correct"]).assign(source=[str(p) for p in paths])
    frame = pd.concat([frame, pd.DataFrame(probs, columns=[f"p_{c}" for c in prep.class_names])], axis=1)
    frame.to_csv(directory / "explanations.csv", index=False)
    return directory
