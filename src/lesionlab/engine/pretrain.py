"""``lesionlab pretrain vae``: fit the VAE on unlabelled images, save the encoder for the model zoo, write figures
and an HTML report.

Images come from any dataset (or ``data.dataset: merged``) through the foundation's :func:`prepare_data`, split
lesion-disjoint. The VAE trains on the ``train`` split and is validated on ``val``; the ``test`` split is never
touched, so a later classifier comparison on the same data and split seed evaluates on images the encoder never saw.
Labels serve only the stratified split and the colours of the latent plot: the loaders hand the model zeros.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import torch
from safetensors.torch import save_file
from torch.utils.data import DataLoader

from lesionlab.config import save_config, to_dict
from lesionlab.config.pretraining import PretrainConfig
from lesionlab.data.prepare import PreparedData, prepare_data
from lesionlab.data.roots import absolute_data_config
from lesionlab.data.source_check import check_if_merged
from lesionlab.data.splits import check_no_leakage
from lesionlab.data.torch_data import ArrayDataset
from lesionlab.data.transforms import get_augmentation
from lesionlab.engine.train import default_workers
from lesionlab.models.backbones import create_backbone, load_backbone_weights
from lesionlab.models.classifier import default_normalisation
from lesionlab.pretraining.losses import BETA_SCHEDULES, RECONSTRUCTION
from lesionlab.pretraining.module import VAEHistory, VAEModule
from lesionlab.pretraining.vae import ConvNeXtVAE, build_vae
from lesionlab.reports.pretrain_figures import (
    PROJECTIONS,
    encode_means,
    plot_latent_projection,
    plot_loss_curves,
    plot_prior_samples,
    plot_reconstructions,
)
from lesionlab.reports.pretrain_report import write_vae_report
from lesionlab.runs import RunPaths, discards_unstarted_runs
from lesionlab.training.trainer_factory import build_trainer

logger = logging.getLogger(__name__)

ENCODER_FILE = "encoder.safetensors"
VAE_FILE = "vae.pt"


@dataclass(frozen=True)
class PretrainResult:
    run: RunPaths
    encoder: Path  # load with model.weights=<this> and model.backbone=<vae.encoder>
    metrics: dict
    seconds: dict[str, float]


def _loaders(data: PreparedData, cfg: PretrainConfig) -> tuple[DataLoader, DataLoader]:
    """Train/val loaders whose targets are zeros: the VAE never receives a label."""
    tr, va = data.indices("train"), data.indices("val")
    aug = get_augmentation(cfg.train.augmentation.preset, cfg.data.image_size, cfg.train.augmentation.params)
    workers = default_workers(cfg.train.trainer.num_workers)
    common = {"num_workers": workers, "persistent_workers": workers > 0}
    train_ds = ArrayDataset(data.images, data.rows[tr], np.zeros(len(tr), dtype=np.int64), aug)
    val_ds = ArrayDataset(data.images, data.rows[va], np.zeros(len(va), dtype=np.int64), None)
    return (DataLoader(train_ds, batch_size=cfg.train.batch_size, shuffle=True,
                       drop_last=len(tr) > cfg.train.batch_size, **common),
            DataLoader(val_ds, batch_size=max(64, cfg.train.batch_size), shuffle=False, **common))


def save_encoder(vae: ConvNeXtVAE, path: Path, cfg: PretrainConfig, mean: tuple, std: tuple) -> Path:
    """The encoder's state dict as safetensors (metadata: architecture, size, normalisation, latent size)."""
    state = {k: v.detach().cpu().contiguous() for k, v in vae.backbone.state_dict().items()}
    meta = {"format": "lesionlab-vae-encoder/1", "backbone": cfg.vae.encoder, "image_size": str(cfg.data.image_size),
            "mean": json.dumps(list(mean)), "std": json.dumps(list(std)), "latent_dim": str(cfg.vae.latent_dim)}
    save_file(state, str(path), metadata=meta)
    return path


def check_zoo_load(encoder: str, path: Path) -> dict[str, int]:
    """Load the saved encoder through the model zoo (``model.weights``); every tensor must match."""
    report = load_backbone_weights(create_backbone(encoder, pretrained=False), path)
    counts = {k: len(v) for k, v in report.items()}
    if counts["missing"] or counts["shape_mismatch"]:
        raise RuntimeError(f"saved encoder does not load cleanly into the zoo backbone {encoder}: {counts}")
    return counts


def _write_figures(vae: ConvNeXtVAE, data: PreparedData, cfg: PretrainConfig, run: RunPaths, mean: tuple,
                   std: tuple, steps: pd.DataFrame, epochs: pd.DataFrame) -> dict[str, Path]:
    held_out = data.indices("val")
    grid = held_out[:cfg.vae.grid_images]
    figs = {"reconstructions": plot_reconstructions(vae, data.images, data.rows[grid], mean, std,
                                                    run.figures / "reconstructions.png"),
            "samples": plot_prior_samples(vae, cfg.vae.grid_images, run.figures / "prior_samples.png",
                                          cfg.train.seed),
            "losses": plot_loss_curves(steps, epochs, run.figures / "loss_curves.png")}
    if len(held_out) >= 3:
        mu = encode_means(vae, data.images, data.rows[held_out], mean, std)
        coords = PROJECTIONS.get(cfg.vae.projection)(mu, cfg.train.seed)
        labels = data.table["label"].to_numpy()[held_out]  # used for the colours only
        figs["latent"] = plot_latent_projection(coords, labels, run.figures / "latent_projection.png",
                                                cfg.vae.projection)
        pd.DataFrame({"image_id": data.table["image_id"].to_numpy()[held_out], "label": labels,
                      "x": coords[:, 0], "y": coords[:, 1]}).to_csv(run.root / "latent_projection.csv", index=False)
    return figs


@discards_unstarted_runs
def pretrain_vae(cfg: PretrainConfig, run: RunPaths | None = None) -> PretrainResult:
    """Train the VAE of ``cfg`` and write its run directory (encoder weights, figures, history, report)."""
    for registry, name in ((RECONSTRUCTION, cfg.vae.reconstruction), (BETA_SCHEDULES, cfg.vae.beta_schedule),
                           (PROJECTIONS, cfg.vae.projection)):
        registry.get(name)  # fail before any work, listing the valid names
    t0 = time.perf_counter()
    L.seed_everything(cfg.train.seed, workers=True, verbose=False)
    vae = build_vae(cfg.vae, cfg.data.image_size)  # checks the encoder and the image size first
    run = run or RunPaths.create(cfg.output_dir, cfg.name)
    cfg = replace(cfg, data=absolute_data_config(cfg.data))
    save_config(cfg, run.config)
    data = prepare_data(cfg.data, progress=cfg.train.progress)
    table = data.table
    check_no_leakage(table, table["split"])
    table[["image_id", "lesion_id", "label", "source", "split"]].to_csv(run.splits, index=False)
    source_check = check_if_merged(data, seed=cfg.data.split.seed)  # several sources: can they be told apart?
    t_data = time.perf_counter() - t0

    mean, std = default_normalisation(vae, False)  # what the zoo will feed this backbone as a classifier
    module = VAEModule(vae, cfg.vae, cfg.train, mean, std)
    history = VAEHistory(run.root / "steps.csv", run.history)
    trainer = build_trainer(cfg.train, run.root, max_epochs=cfg.train.epochs, callbacks=[history])
    train_loader, val_loader = _loaders(data, cfg)
    t1 = time.perf_counter()
    trainer.fit(module, train_loader, val_loader)
    t_fit = time.perf_counter() - t1

    vae = vae.cpu().eval()
    encoder = save_encoder(vae, run.root / ENCODER_FILE, cfg, mean, std)
    torch.save({"config": to_dict(cfg), "state_dict": vae.state_dict(), "mean": mean, "std": std}, run.root / VAE_FILE)
    zoo = check_zoo_load(cfg.vae.encoder, encoder)
    steps, epochs = pd.DataFrame(history.steps), pd.read_csv(run.history)
    figures = _write_figures(vae, data, cfg, run, mean, std, steps, epochs)
    last = epochs.iloc[-1]
    counts = table["split"].value_counts().reindex(["train", "val", "test"], fill_value=0)
    metrics = {"epochs": len(epochs), "steps": len(steps), "final_beta": float(last["beta"]),
               **{k: float(last[k]) for k in ("train_loss", "train_recon", "train_kl", "val_recon", "val_kl",
                                              "val_elbo")},
               "best_val_elbo": float(epochs["val_elbo"].min()), "images": {k: int(v) for k, v in counts.items()},
               "encoder": cfg.vae.encoder, "encoder_params": sum(p.numel() for p in vae.backbone.parameters()),
               "vae_params": sum(p.numel() for p in vae.parameters()), "zoo_load": zoo, "mean": mean, "std": std,
               "source_check": source_check.to_dict() if source_check else None}
    seconds = {"data": t_data, "fit": t_fit, "total": time.perf_counter() - t0}
    run.metrics.write_text(json.dumps({**metrics, "seconds": seconds}, indent=2))
    write_vae_report(run, cfg, metrics, seconds, figures, epochs, data)
    logger.info("VAE val -ELBO %.1f (recon %.1f, KL %.1f); encoder: %s; report: %s", metrics["val_elbo"],
                metrics["val_recon"], metrics["val_kl"], encoder, run.report)
    return PretrainResult(run, encoder, metrics, seconds)
