"""Grad-CAM / Grad-CAM++ heat-maps (the ``grad-cam`` package) and the CAM-in-lesion score.

CAM-in-lesion = the share of a heat-map's mass inside the lesion mask. Averaged per class it catches a model that
looks at rulers, hair, ink or the dark corners of the dermatoscope instead of the lesion. Masks are read as
``convert("L") > 128`` and cropped and resized with the image's own crop policy, so they line up with the pixels
the model saw.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from pytorch_grad_cam import GradCAM, GradCAMPlusPlus
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from lesionlab.data.crops import get_crop
from lesionlab.data.transforms import to_model_input
from lesionlab.models.classifier import LesionClassifier
from lesionlab.registry import Registry

logger = logging.getLogger(__name__)

CAM_METHODS: Registry[type] = Registry("CAM method")
CAM_METHODS.add("gradcam", GradCAM, help="Grad-CAM (Selvaraju et al., 2017)")
CAM_METHODS.add("gradcam++", GradCAMPlusPlus, help="Grad-CAM++ (Chattopadhyay et al., 2018)")

#: Folder names searched (in order) under a dataset's folder for lesion masks.
MASK_FOLDERS = ("masks_200x150", "masks", "HAM10000_segmentations_lesion_tschandl", "masks_half")
MASK_PATTERNS = ("{}_segmentation.png", "{}.png", "{}_mask.png", "{}_lesion.png", "{}_lesion.bmp")

# Grad-CAM hooks the target layers of a shared model; one CAM at a time per process keeps requests from mixing.
_CAM_LOCK = threading.Lock()


def _classifiers(model: nn.Module) -> list[nn.Module]:
    """The classifiers inside ``model`` (itself, or the members of an ensemble wrapper)."""
    if isinstance(model, LesionClassifier):
        return [model]
    found = [m for m in model.modules() if isinstance(m, LesionClassifier)]
    return found or [model]


def _stage_layer(net: nn.Module, image_size: int, min_cam_size: int) -> nn.Module:
    """The deepest timm feature stage whose map is still at least ``min_cam_size`` pixels wide; else the last conv."""
    backbone = getattr(net, "backbone", net)
    info = getattr(backbone, "feature_info", None)
    stages = [d for d in info if isinstance(d, dict) and "module" in d] if isinstance(info, list) else []
    if stages:
        fitting = [d for d in stages if image_size / d.get("reduction", 1) >= min_cam_size] or stages[:1]
        return backbone.get_submodule(fitting[-1]["module"])
    convs = [m for m in backbone.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError(f"no convolutional layer found in {type(backbone).__name__} for Grad-CAM")
    return convs[-1]


def target_layers(model: nn.Module, image_size: int, min_cam_size: int = 4) -> list[nn.Module]:
    """One Grad-CAM layer per classifier (ensembles average their members' maps)."""
    return [_stage_layer(net, image_size, min_cam_size) for net in _classifiers(model)]


def cam_maps(model: nn.Module, x: torch.Tensor, classes: Sequence[int], method: str = "gradcam",
             min_cam_size: int = 4, batch_size: int = 32) -> np.ndarray:
    """Heat-maps ``(B, H, W)`` in [0, 1] for normalised inputs ``x`` ``(B, 3, H, W)`` and one class per image."""
    cls = CAM_METHODS.get(method)
    if len(classes) != len(x):
        raise ValueError(f"{len(classes)} target classes for {len(x)} images")
    layers = target_layers(model, int(x.shape[-1]), min_cam_size)
    out = []
    with _CAM_LOCK, torch.inference_mode(False), torch.enable_grad():
        cam = cls(model=model.eval(), target_layers=layers)
        try:
            for start in range(0, len(x), batch_size):
                # an input that needs gradients makes the maps work for frozen backbones too
                xb = x[start:start + batch_size].detach().clone().requires_grad_(True)
                targets = [ClassifierOutputTarget(int(c)) for c in classes[start:start + batch_size]]
                out.append(cam(input_tensor=xb, targets=targets))
        finally:
            cam.activations_and_grads.release()
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, *x.shape[-2:]), np.float32)


def gradcam_map(model: nn.Module, x: torch.Tensor, class_index: int) -> np.ndarray:
    """One ``(H, W)`` Grad-CAM map for a normalised ``(1, 3, H, W)`` input (used by the predictor's heat-maps)."""
    return cam_maps(model, x, [class_index])[0]


def cam_in_lesion(cams: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Share of each heat-map's mass inside its lesion mask (1: all inside, 0: all outside; NaN for an empty map)."""
    cams = np.asarray(cams, dtype=np.float64)
    masks = np.asarray(masks, dtype=bool)
    if cams.shape != masks.shape:
        raise ValueError(f"heat-maps {cams.shape} and masks {masks.shape} differ in shape")
    if (cams < 0).any():
        raise ValueError("heat-maps must be non-negative")
    axes = tuple(range(cams.ndim - 2, cams.ndim))
    total = cams.sum(axis=axes)
    inside = (cams * masks).sum(axis=axes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, inside / total, np.nan)


def find_mask_dir(dataset_dir: Path) -> Path | None:
    """The first of :data:`MASK_FOLDERS` that exists under a dataset's folder."""
    for name in MASK_FOLDERS:
        if (dataset_dir / name).is_dir():
            return dataset_dir / name
    return None


def load_masks(image_ids: Sequence[str], mask_dir: str | Path, crop: str, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks ``(N, size, size)`` cropped like the images, and which ids had a mask file."""
    mask_dir = Path(mask_dir)
    paths = [next((mask_dir / p.format(i) for p in MASK_PATTERNS if (mask_dir / p.format(i)).is_file()), None)
             for i in image_ids]
    masks, found = load_mask_files(paths, crop, size)
    if not found.any():
        logger.warning("No lesion masks found in %s for %d images", mask_dir, len(image_ids))
    return masks, found


def load_mask_files(paths: Sequence[str | Path | None], crop: str, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks ``(N, size, size)`` from mask files (None or NaN: no mask), cropped like the images."""
    crop_fn = get_crop(crop)
    masks = np.zeros((len(paths), size, size), dtype=bool)
    found = np.zeros(len(paths), dtype=bool)
    for i, path in enumerate(paths):
        if path is None or not isinstance(path, str | Path) or not Path(path).is_file():
            continue
        with Image.open(path) as img:
            cropped = crop_fn(img.convert("L"), size).convert("L")
        masks[i] = np.asarray(cropped) > 128
        found[i] = True
    return masks, found


def overlay(image: np.ndarray, cam: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Heat-map (jet colours) blended over an RGB uint8 image."""
    from pytorch_grad_cam.utils.image import show_cam_on_image

    return show_cam_on_image(image.astype(np.float32) / 255.0, np.clip(cam, 0, 1), use_rgb=True,
                             image_weight=1 - alpha)


@dataclass(frozen=True)
class Explanations:
    """Heat-maps for a set of images with their truth, prediction and CAM-in-lesion score."""

    images: np.ndarray  # (N, H, W, 3) uint8
    cams: np.ndarray  # (N, H, W) in [0, 1]
    masks: np.ndarray | None  # (N, H, W) bool, None without masks
    frame: pd.DataFrame  # image_id, truth, prediction, probability, correct, cam_in_lesion
    method: str


def explain_images(model: nn.Module, images: np.ndarray, mean: Sequence[float], std: Sequence[float],
                   image_ids: Sequence[str], y_true: np.ndarray, probs: np.ndarray, class_names: Sequence[str], *,
                   method: str = "gradcam", masks: np.ndarray | None = None, min_cam_size: int = 4) -> Explanations:
    """Grad-CAM of each image's predicted class; CAM-in-lesion where a mask is given (rows of all-False = none)."""
    pred = probs.argmax(axis=1)
    x = to_model_input(torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2), mean, std)
    cams = cam_maps(model, x, pred.tolist(), method, min_cam_size)
    score = np.full(len(images), np.nan)
    if masks is not None:
        has = masks.reshape(len(masks), -1).any(axis=1)
        score[has] = cam_in_lesion(cams[has], masks[has])
    frame = pd.DataFrame({"image_id": list(image_ids), "truth": [class_names[i] for i in y_true],
                          "prediction": [class_names[i] for i in pred], "probability": probs.max(axis=1),
                          "correct": pred == np.asarray(y_true), "cam_in_lesion": score})
    return Explanations(np.asarray(images), cams, masks, frame, method)


def cam_in_lesion_by_class(frame: pd.DataFrame, class_names: Sequence[str]) -> pd.DataFrame:
    """Mean CAM-in-lesion per true class: all explained images, correct ones, wrong ones."""
    rows = []
    for name in class_names:
        sub = frame[(frame["truth"] == name) & frame["cam_in_lesion"].notna()]
        rows.append({"class": name, "images": len(sub), "CAM in lesion": sub["cam_in_lesion"].mean(),
                     "correct": sub.loc[sub["correct"], "cam_in_lesion"].mean(),
                     "wrong": sub.loc[~sub["correct"], "cam_in_lesion"].mean()})
    scored = frame[frame["cam_in_lesion"].notna()]
    rows.append({"class": "all", "images": len(scored), "CAM in lesion": scored["cam_in_lesion"].mean(),
                 "correct": scored.loc[scored["correct"], "cam_in_lesion"].mean(),
                 "wrong": scored.loc[~scored["correct"], "cam_in_lesion"].mean()})
    return pd.DataFrame(rows).set_index("class")


def balanced_sample(y_true: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Up to ``n`` positions, dealt round-robin over the classes (rare classes are not crowded out)."""
    rng = np.random.default_rng(seed)
    pools = [list(rng.permutation(np.flatnonzero(y_true == c))) for c in np.unique(y_true)]
    picked: list[int] = []
    while len(picked) < n and any(pools):
        for pool in pools:
            if pool and len(picked) < n:
                picked.append(int(pool.pop()))
    return np.sort(np.array(picked, dtype=np.int64))
