"""Heat-maps for one prediction: which pixels moved the predicted class's score.

Methods register by name. ``saliency`` is a smoothed input-gradient map (Simonyan et al., 2014): the absolute
gradient of the class logit with respect to the normalised input, maximum over colour channels, blurred and
scaled to [0, 1]. It needs only autograd (no hooks, so it is safe to run from several threads on one model).
When :mod:`lesionlab.evaluation.explain` provides Grad-CAM, ``gradcam`` is registered too and is preferred.
"""

from __future__ import annotations

import base64
import io
import logging
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from lesionlab.registry import Registry

logger = logging.getLogger(__name__)

HeatmapFn = Callable[[nn.Module, torch.Tensor, int], np.ndarray]
HEATMAPS: Registry[HeatmapFn] = Registry("heat-map method")


@HEATMAPS.register("saliency", help="smoothed |d logit / d input| (input-gradient saliency)")
def gradient_saliency(model: nn.Module, x: torch.Tensor, class_index: int) -> np.ndarray:
    """``x`` is one normalised input ``(1, 3, H, W)``; returns an ``(H, W)`` map in [0, 1]."""
    x = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        logit = model.eval()(x)[0, class_index]
        (grad,) = torch.autograd.grad(logit, x)
    sal = grad.abs().amax(dim=1, keepdim=True)
    k = max(3, (x.shape[-1] // 16) | 1)  # odd blur window ~1/16 of the side
    sal = F.avg_pool2d(sal, k, stride=1, padding=k // 2)[0, 0]
    sal = sal - sal.min()
    top = float(sal.max())
    return (sal / top if top > 0 else sal).cpu().numpy().astype(np.float32)


def default_method() -> str:
    """``gradcam`` (registered on first use)."""
    _register_gradcam()
    return "gradcam"


def _register_gradcam() -> None:
    """Register the evaluation package's Grad-CAM, imported on first use (it loads pytorch-grad-cam)."""
    if "gradcam" in HEATMAPS:
        return
    from lesionlab.evaluation.explain import gradcam_map

    HEATMAPS.add("gradcam", gradcam_map, help="Grad-CAM on the last convolutional stage (lesionlab.evaluation.explain)")


def compute_heatmap(model: nn.Module, x: torch.Tensor, class_index: int,
                    method: str | None = None) -> tuple[np.ndarray, str]:
    """The map and the method that made it; Grad-CAM falls back to saliency (with a warning) if it fails."""
    method = method or default_method()
    try:
        return HEATMAPS.get(method)(model, x, class_index), method
    except Exception as exc:
        if method == "saliency":
            raise
        logger.warning("%s heat-map failed (%s: %s); falling back to gradient saliency", method, type(exc).__name__,
                       exc)
        return gradient_saliency(model, x, class_index), "saliency"


def png_data_url(rgb_or_rgba: np.ndarray) -> str:
    """An ``(H, W, 3|4)`` uint8 array as a ``data:image/png;base64,`` URL."""
    buf = io.BytesIO()
    Image.fromarray(rgb_or_rgba).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def colorize(heat: np.ndarray, size: int | None = None) -> np.ndarray:
    """[0, 1] map → RGBA uint8 (inferno colours, transparent where the map is low), resized to ``size``."""
    from matplotlib import colormaps

    rgba = (colormaps["inferno"](np.clip(heat, 0, 1)) * 255).astype(np.uint8)
    rgba[..., 3] = (np.clip(heat, 0, 1) * 220).astype(np.uint8)
    img = Image.fromarray(rgba, mode="RGBA")
    if size and img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(img)
