"""Batched inference over cached uint8 arrays, shared by training, ``evaluate`` and the predictor."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from lesionlab.data.transforms import to_model_input
from lesionlab.evaluation.tta import get_tta


@torch.inference_mode()
def predict_probs(model: nn.Module, images: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...], *,
                  indices: np.ndarray | None = None, batch_size: int = 256, temperature: float = 1.0,
                  tta: str = "none", device: str | torch.device = "cpu", progress: bool = False) -> np.ndarray:
    """Softmax probabilities ``(N, C)`` for ``images[indices]`` (``(N, H, W, 3)`` uint8).

    With a TTA policy (see :mod:`lesionlab.evaluation.tta`) the probabilities of every view are averaged.
    """
    views = get_tta(tta)
    model.eval().to(device)
    idx = np.arange(len(images)) if indices is None else np.asarray(indices)
    out = []
    for start in tqdm(range(0, len(idx), batch_size), desc="Predicting", disable=not progress, unit="batch"):
        batch = torch.from_numpy(np.ascontiguousarray(images[idx[start:start + batch_size]])).permute(0, 3, 1, 2)
        x = to_model_input(batch.to(device), mean, std)
        probs = sum((model(view(x)).float() / temperature).softmax(-1) for view in views) / len(views)
        out.append(probs.cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0))
