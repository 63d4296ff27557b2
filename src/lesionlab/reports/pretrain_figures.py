"""Figures of a VAE run: reconstructions, prior samples, a 2-D projection of latent means, loss curves."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE
from torchvision.utils import make_grid

from lesionlab.data.transforms import to_model_input
from lesionlab.pretraining.vae import ConvNeXtVAE
from lesionlab.registry import Registry
from lesionlab.reports.plots import save_figure

#: ``(features (N, D), seed) -> (N, 2)``.
PROJECTIONS: Registry[Callable[[np.ndarray, int], np.ndarray]] = Registry("projection")


@PROJECTIONS.register("pca", help="principal component analysis (linear, deterministic)")
def pca_2d(x: np.ndarray, seed: int = 0) -> np.ndarray:
    return PCA(n_components=2, random_state=seed).fit_transform(x)


@PROJECTIONS.register("tsne", help="t-SNE (non-linear neighbourhoods; perplexity adapted to small sets)")
def tsne_2d(x: np.ndarray, seed: int = 0) -> np.ndarray:
    perplexity = float(min(30, max(2, (len(x) - 1) // 3)))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)


def _show_grid(images: torch.Tensor, path: Path, title: str, nrow: int) -> Path:
    grid = make_grid(images.clamp(0, 1), nrow=nrow, padding=2, pad_value=1.0).permute(1, 2, 0).numpy()
    fig, ax = plt.subplots(figsize=(min(12, 1.2 * nrow + 1), 1.3 * grid.shape[0] / grid.shape[1] * nrow + 0.8))
    ax.imshow(grid)
    ax.set_axis_off()
    ax.set_title(title)
    return save_figure(fig, path)


@torch.no_grad()
def encode_means(vae: ConvNeXtVAE, images: np.ndarray, rows: np.ndarray, mean: Sequence[float],
                 std: Sequence[float], batch_size: int = 256) -> np.ndarray:
    """Latent means ``μ`` ``(N, latent_dim)`` of ``images[rows]`` (uint8 ``(N, H, W, 3)``)."""
    vae.eval()
    out = []
    for start in range(0, len(rows), batch_size):
        batch = torch.from_numpy(np.ascontiguousarray(images[rows[start:start + batch_size]])).permute(0, 3, 1, 2)
        out.append(vae.encode(to_model_input(batch, mean, std))[0].float().numpy())
    return np.concatenate(out) if out else np.zeros((0, vae.latent_dim), dtype=np.float32)


@torch.no_grad()
def plot_reconstructions(vae: ConvNeXtVAE, images: np.ndarray, rows: np.ndarray, mean: Sequence[float],
                         std: Sequence[float], path: Path) -> Path:
    """Originals (odd rows) above their reconstructions from ``μ`` (even rows)."""
    vae.eval()
    batch = torch.from_numpy(np.ascontiguousarray(images[rows])).permute(0, 3, 1, 2)
    recon = torch.sigmoid(vae(to_model_input(batch, mean, std), sample=False)[0]).float()
    original = batch.float() / 255.0
    nrow = min(8, len(rows))
    pairs = []
    for start in range(0, len(rows), nrow):
        pairs += [original[start:start + nrow], recon[start:start + nrow]]
    return _show_grid(torch.cat(pairs), path, "originals (rows 1, 3, ...) and reconstructions from μ", nrow)


def plot_prior_samples(vae: ConvNeXtVAE, n: int, path: Path, seed: int = 0) -> Path:
    """Images decoded from ``z ~ N(0, I)``."""
    vae.eval()
    samples = vae.sample(n, generator=torch.Generator().manual_seed(seed)).float().cpu()
    return _show_grid(samples, path, "samples from the prior N(0, I)", min(8, n))


def plot_latent_projection(coords: np.ndarray, labels: Sequence[str], path: Path, method: str) -> Path:
    """Scatter of 2-D projected latent means, one colour per diagnosis (labels are used for colour only)."""
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    label_array = np.asarray(labels)
    for name in sorted(set(label_array.tolist())):
        keep = label_array == name
        ax.scatter(coords[keep, 0], coords[keep, 1], s=10, alpha=0.7, label=f"{name} ({int(keep.sum())})")
    ax.set_title(f"latent means μ, {method.upper()} projection (held-out images)")
    ax.legend(fontsize=8, markerscale=2)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def plot_loss_curves(steps: pd.DataFrame, epochs: pd.DataFrame, path: Path) -> Path:
    """Per step: reconstruction, KL and β; per epoch: validation reconstruction, KL and negative ELBO."""
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.8))
    for ax, key, title in ((axes[0], "recon", "reconstruction loss"), (axes[1], "kl", "KL divergence"),
                           (axes[2], "beta", "β (KL weight)")):
        ax.plot(steps["step"], steps[key], lw=0.8, label="train (per step)")
        ax.set_title(title)
        ax.set_xlabel("step")
    ax = axes[3]
    for key, label in (("val_recon", "val reconstruction"), ("val_kl", "val KL"), ("val_elbo", "val −ELBO (β=1)")):
        ax.plot(epochs["epoch"], epochs[key], marker="o", ms=3, label=label)
    ax.set_title("validation per epoch")
    ax.set_xlabel("epoch")
    for a in axes:
        a.grid(alpha=0.3)
        a.legend(fontsize=7)
    return save_figure(fig, path)
