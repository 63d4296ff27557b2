"""``lesionlab train``: prepare data, fit with Lightning, evaluate on the held-out test split, write the report."""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass

import lightning as L
import pandas as pd
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from torch.utils.data import DataLoader

from lesionlab.config import ExperimentConfig, save_config
from lesionlab.data.prepare import PreparedData, prepare_data
from lesionlab.data.splits import check_no_leakage, split_summary
from lesionlab.data.torch_data import ArrayDataset
from lesionlab.data.transforms import get_augmentation
from lesionlab.evaluation.artifacts import write_evaluation
from lesionlab.evaluation.inference import predict_probs
from lesionlab.evaluation.run_report import write_run_report
from lesionlab.models.checkpoint import Preprocessing, save_model
from lesionlab.models.classifier import create_model, default_normalisation
from lesionlab.runs import RunPaths
from lesionlab.training.callbacks import HistoryWriter
from lesionlab.training.losses import class_weights, create_loss
from lesionlab.training.module import LesionModule

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    run: RunPaths
    metrics: dict
    seconds: dict[str, float]


def default_workers(requested: int) -> int:
    """-1 → one loader worker per spare core (none on a 1-2 core machine, where workers fight the model)."""
    if requested >= 0:
        return requested
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return 0 if cores <= 2 else min(8, cores // 2)


def make_loaders(data: PreparedData, cfg: ExperimentConfig) -> tuple[DataLoader, DataLoader]:
    targets = data.targets()
    tr, va = data.indices("train"), data.indices("val")
    aug = get_augmentation(cfg.train.augment, cfg.data.image_size)
    workers = default_workers(cfg.train.num_workers)
    common = {"num_workers": workers, "persistent_workers": workers > 0, "pin_memory": torch.cuda.is_available()}
    train_ds = ArrayDataset(data.images, data.rows[tr], targets[tr], aug)
    val_ds = ArrayDataset(data.images, data.rows[va], targets[va], None)
    drop_last = len(tr) > cfg.train.batch_size  # a last batch of 1 breaks BatchNorm
    return (DataLoader(train_ds, batch_size=cfg.train.batch_size, shuffle=True, drop_last=drop_last, **common),
            DataLoader(val_ds, batch_size=cfg.eval.batch_size, shuffle=False, **common))


def train(cfg: ExperimentConfig, run: RunPaths | None = None) -> TrainResult:
    """Run one experiment end to end and return its run directory and test metrics."""
    t0 = time.perf_counter()
    L.seed_everything(cfg.train.seed, workers=True, verbose=False)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    run = run or RunPaths.create(cfg.output_dir, cfg.name)
    save_config(cfg, run.config)
    logger.info("Run directory: %s", run.root)

    data = prepare_data(cfg.data, progress=cfg.train.progress)
    t_data = time.perf_counter() - t0
    table, classes = data.table, data.dataset.class_names
    check_no_leakage(table, table["split"])  # again, right before training: nothing may have changed it
    table[["image_id", "lesion_id", "label", "split", *(["fold"] if "fold" in table else [])]].to_csv(
        run.splits, index=False)
    if len(data.skipped):
        data.skipped.to_csv(run.skipped, index=False)
    counts = split_summary(table, table["split"], classes)
    summary = {**data.dataset.summary(), "split_counts": counts.to_dict(), "skipped_images": len(data.skipped),
               "cache": str(data.arrays.directory), "cache_built": data.arrays.built,
               "cache_seconds": data.arrays.seconds}
    run.data_summary.write_text(json.dumps(summary, indent=2, default=str))

    train_counts = counts.loc[list(classes), "train"].to_numpy()
    weights = class_weights(cfg.train.class_weights, train_counts)
    model = create_model(cfg.model, len(classes))
    mean, std = default_normalisation(model, cfg.model.pretrained or bool(cfg.model.weights))
    module = LesionModule(model, create_loss(cfg.train.loss, weights, cfg.train.label_smoothing), cfg.train,
                          len(classes), mean, std)
    train_loader, val_loader = make_loaders(data, cfg)

    mode = "min" if cfg.train.monitor == "val_loss" else "max"
    ckpt = ModelCheckpoint(dirpath=run.checkpoints, filename="best", monitor=cfg.train.monitor, mode=mode,
                           save_top_k=1, save_last=False)
    callbacks: list[L.Callback] = [ckpt, HistoryWriter(run.history)]
    if cfg.train.patience:
        callbacks.append(EarlyStopping(monitor=cfg.train.monitor, mode=mode, patience=cfg.train.patience))
    trainer = L.Trainer(
        max_epochs=cfg.train.epochs, accelerator=cfg.train.accelerator, devices=cfg.train.devices,
        num_nodes=cfg.train.num_nodes, strategy=cfg.train.strategy, precision=cfg.train.precision,
        callbacks=callbacks, logger=False, default_root_dir=run.root, enable_progress_bar=cfg.train.progress,
        enable_model_summary=False, num_sanity_val_steps=0, deterministic=False,
        max_time={"minutes": cfg.train.max_time_minutes} if cfg.train.max_time_minutes else None,
    )
    t1 = time.perf_counter()
    trainer.fit(module, train_loader, val_loader)
    t_fit = time.perf_counter() - t1

    if ckpt.best_model_path:
        state = torch.load(ckpt.best_model_path, map_location="cpu", weights_only=False)["state_dict"]
        module.load_state_dict(state)
    prep = Preprocessing(image_size=cfg.data.image_size, crop=cfg.data.crop, mean=mean, std=std,
                         class_names=tuple(classes), taxonomy=data.dataset.taxonomy.name, tta=cfg.eval.tta)
    best_epoch = int(pd.read_csv(run.history).pipe(lambda h: h.loc[
        h[cfg.train.monitor].idxmax() if mode == "max" else h[cfg.train.monitor].idxmin(), "epoch"]))
    final_model = module.inference_model().cpu()
    save_model(run.model, final_model, cfg.model, prep,
               extra={"best_epoch": best_epoch, "dataset": data.dataset.name,
                      "train_images": len(data.indices("train"))})

    t2 = time.perf_counter()
    test = data.indices("test")
    seen = set(table.loc[table["split"] != "test", "lesion_id"])
    assert not seen & set(table.loc[test, "lesion_id"]), "test lesions overlap the training/validation lesions"
    probs = predict_probs(final_model, data.images, mean, std, indices=data.rows[test],
                          batch_size=cfg.eval.batch_size, tta=cfg.eval.tta)
    metrics = write_evaluation(run.root, table.iloc[test], data.targets()[test], probs, classes, cfg.eval.topk)
    t_eval = time.perf_counter() - t2
    seconds = {"data": t_data, "fit": t_fit, "evaluate": t_eval, "total": time.perf_counter() - t0}
    (run.root / "timings.json").write_text(json.dumps(seconds, indent=2))
    write_run_report(run, metrics, cfg=cfg, split_counts=counts, summary=summary, seconds=seconds,
                     best_epoch=best_epoch)
    logger.info("Test balanced accuracy %.4f, macro AUC %.4f; report: %s", metrics["balanced_accuracy"],
                metrics["auc_macro"], run.report)
    return TrainResult(run, metrics, seconds)


def load_split_table(run: RunPaths) -> pd.DataFrame:
    return pd.read_csv(run.splits, dtype={"image_id": str, "lesion_id": str})


__all__ = ["TrainResult", "default_workers", "load_split_table", "make_loaders", "train"]
