"""Batched inference over cached uint8 arrays, shared by training, ``evaluate`` and the predictor."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from lesionlab.data.transforms import to_model_input
from lesionlab.inference.tta import get_tta


@torch.inference_mode()
def predict_probs(model: nn.Module, images: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...], *,
                  indices: np.ndarray | None = None, batch_size: int = 256, temperature: float = 1.0,
                  tta: str = "none", device: str | torch.device = "cpu", progress: bool = False,
                  metadata: np.ndarray | None = None) -> np.ndarray:
    """Softmax probabilities ``(N, C)`` for ``images[indices]`` (``(N, H, W, 3)`` uint8).

    With a TTA policy (see :mod:`lesionlab.inference.tta`) the probabilities of every view are averaged.
    ``metadata``: encoded patient metadata ``(N, D)`` aligned with the result rows, for metadata-fusion models.
    """
    logits = predict_view_logits(model, images, mean, std, indices=indices, batch_size=batch_size, tta=tta,
                                 device=device, progress=progress, metadata=metadata)
    if logits.shape[1] == 0:
        return np.zeros((0, 0))
    return torch.from_numpy(logits / temperature).softmax(-1).mean(0).numpy()


@torch.inference_mode()
def predict_view_logits(model: nn.Module, images: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...], *,
                        indices: np.ndarray | None = None, batch_size: int = 256, tta: str = "none",
                        device: str | torch.device = "cpu", progress: bool = False,
                        metadata: np.ndarray | None = None) -> np.ndarray:
    """Logits ``(V, N, C)`` of every TTA view, so calibration can be fitted and the views combined afterwards.

    ``probs_from_view_logits(predict_view_logits(...), T)`` (see :mod:`lesionlab.inference.calibration`) equals
    ``predict_probs(..., temperature=T)``.
    """
    views = get_tta(tta)
    model.eval().to(device)
    idx = np.arange(len(images)) if indices is None else np.asarray(indices)
    out = []
    with _progress(model, len(range(0, len(idx), batch_size)), len(views), progress) as step:
        for start in range(0, len(idx), batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(images[idx[start:start + batch_size]])).permute(0, 3, 1, 2)
            x = to_model_input(batch.to(device), mean, std)
            fwd = _with_metadata(model, metadata, start, batch_size, x.device)
            out.append(torch.stack([step(fwd(view(x))).float() for view in views]).cpu().numpy())
    return np.concatenate(out, axis=1) if out else np.zeros((len(views), 0, 0), dtype=np.float32)


@contextmanager
def _progress(model: nn.Module, batches: int, views: int, enabled: bool) -> Iterator[Callable]:
    """A bar that moves once per member forward pass (batches x views x ensemble members), so an ensemble with
    test-time augmentation on a single batch still shows progress; yields the per-view step (a pass-through)."""
    members = list(getattr(model, "members", None) or [])
    unit = f"{len(members)} members x {views} views" if members else f"{views} views"
    bar = tqdm(total=batches * views * max(len(members), 1), desc=f"Predicting ({unit})", disable=not enabled,
               unit="pass")

    def count(*_: object) -> None:  # a forward hook must return None: a value would replace the member's output
        bar.update(1)

    hooks = [m.register_forward_hook(count) for m in members]
    try:
        yield (lambda y: y) if members else (lambda y: (bar.update(1), y)[1])
    finally:
        for hook in hooks:
            hook.remove()
        bar.close()


def _with_metadata(model: nn.Module, metadata: np.ndarray | None, start: int, batch_size: int,
                   device: torch.device) -> nn.Module | Callable[[torch.Tensor], torch.Tensor]:
    """``model``, or ``model(x, meta=...)`` bound to this batch's rows of encoded metadata."""
    if metadata is None:
        return model
    meta = torch.as_tensor(np.asarray(metadata[start:start + batch_size], dtype=np.float32), device=device)
    return lambda x: model(x, meta=meta)
