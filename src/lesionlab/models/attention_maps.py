"""Soft-attention heat-maps for any prediction of a run trained with ``model.attention=soft``."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from lesionlab.data.crops import get_crop
from lesionlab.data.images import open_image
from lesionlab.data.transforms import to_model_input
from lesionlab.models.attention import attention_heatmap

logger = logging.getLogger(__name__)


def overlay(image: np.ndarray, heat: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend an ``(H, W)`` map in [0, 1] (inferno colours) over an ``(H, W, 3)`` uint8 image."""
    from matplotlib import colormaps

    colours = (colormaps["inferno"](heat)[..., :3] * 255).astype(np.float32)
    return (image.astype(np.float32) * (1 - alpha) + colours * alpha).clip(0, 255).astype(np.uint8)


def save_attention_maps(run: str | Path, images: Sequence[str | Path], out_dir: str | Path) -> list[dict]:
    """Predict ``images`` with the run's model and write one attention overlay PNG per image.

    Returns (and writes to ``predictions.json``) the image, top-1 label, its probability and the PNG path.
    Raises ValueError when the model has no attention block.
    """
    from lesionlab.models.checkpoint import load_model

    run = Path(run)
    model, prep = load_model(run / "model.pt" if run.is_dir() else run)
    crop = get_crop(prep.crop)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in images:
        arr = np.asarray(crop(open_image(path), prep.image_size), dtype=np.uint8)
        x = to_model_input(torch.from_numpy(arr).permute(2, 0, 1)[None], prep.mean, prep.std)
        heat = attention_heatmap(model, x)[0].numpy()  # raises for models without attention
        with torch.no_grad():
            probs = (model(x).float() / prep.temperature).softmax(-1)[0]
        k = int(probs.argmax())
        target = out / f"{Path(path).stem}_attention.png"
        Image.fromarray(np.concatenate([arr, overlay(arr, heat)], axis=1)).save(target)
        written.append({"image": str(path), "label": prep.class_names[k], "probability": float(probs[k]),
                        "heatmap": str(target)})
    (out / "predictions.json").write_text(json.dumps(written, indent=2))
    logger.info("Wrote %d attention heat-maps to %s", len(written), out)
    return written
