"""``lesionlab augment-preview``: a PNG grid of augmented training images, so a user sees what the network sees."""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

from lesionlab.config import ConfigError, ExperimentConfig
from lesionlab.data.batch_augment import BatchAugment
from lesionlab.data.transforms import Transform, augmentation_params, build_augmentation
from lesionlab.reports.plots import save_figure


def preview_grid(images: np.ndarray, labels: list[str], transform: Transform, path: Path, *, views: int = 6,
                 seed: int = 0, title: str = "") -> Path:
    """Rows = images (first column the original), columns = ``views`` random augmentations of it."""
    torch.manual_seed(seed)
    n = len(images)
    fig, axes = plt.subplots(n, views + 1, figsize=((views + 1) * 1.3, n * 1.35), squeeze=False)
    for r in range(n):
        original = torch.from_numpy(np.ascontiguousarray(images[r])).permute(2, 0, 1)
        for c in range(views + 1):
            img = original if c == 0 else transform(original.clone())
            ax = axes[r, c]
            ax.imshow(img.permute(1, 2, 0).numpy())
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title("original" if c == 0 else f"view {c}", fontsize=8)
        axes[r, 0].set_ylabel(labels[r], fontsize=8)
    fig.suptitle(title, fontsize=9)
    return save_figure(fig, path)


def augment_preview(cfg: ExperimentConfig, out: str | Path | None = None, *, n_images: int = 6, views: int = 6,
                    seed: int = 0) -> Path:
    """Augment ``n_images`` training images (one per class first) of ``cfg``'s data with its preset + params.

    Writes ``out``, else ``<cfg.output_dir>/augment-preview-<time>.png``.
    """
    from lesionlab.data.prepare import prepare_data

    if n_images < 1 or views < 1:
        raise ConfigError("--images and --views must be at least 1")
    params = augmentation_params(cfg.train.augmentation.preset, cfg.train.augmentation.params)
    data = prepare_data(cfg.data, progress=cfg.train.progress)
    train = data.indices("train")
    targets = data.targets()[train]
    rng = np.random.default_rng(seed)
    picks = [int(rng.choice(train[targets == c])) for c in np.unique(targets)]  # a class mix first
    rest = rng.permutation(np.setdiff1d(train, picks))
    chosen = (picks + rest.tolist())[:n_images]
    names = data.dataset.class_names
    labels = [names[t] for t in data.targets()[chosen]]
    changed = {k: v for k, v in params.items() if k in cfg.train.augmentation.params}
    title = (f"augment={cfg.train.augmentation.preset}" + (f" with {changed}" if changed else "")
             + f" at {cfg.data.image_size}px")
    if cfg.train.augmentation.mode == "batch":  # what the batched path draws for one sample
        batched = BatchAugment(params)
        transform: Transform = lambda img: batched(img[None])[0]  # noqa: E731
        title += " (batched)"
    else:
        transform = build_augmentation(params, cfg.data.image_size)
    out = Path(out) if out else Path(cfg.output_dir) / f"augment-preview-{_dt.datetime.now():%Y%m%d-%H%M%S}.png"
    return preview_grid(np.asarray(data.images[data.rows[chosen]]), labels, transform, out, views=views,
                        seed=seed, title=title)
