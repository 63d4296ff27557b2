"""``lesionlab train``: prepare data, fit with Lightning, evaluate on the held-out test split, write the report."""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import replace

import lightning as L
import numpy as np
import pandas as pd
import torch
from lightning.pytorch.callbacks import EarlyStopping
from torch.utils.data import DataLoader

from lesionlab.config import ExperimentConfig, save_config
from lesionlab.data.prepare import PreparedData, prepare_data, with_validation_in_training
from lesionlab.data.roots import absolute_data_config, absolute_path
from lesionlab.data.splits import check_no_leakage
from lesionlab.data.torch_data import ArrayDataset
from lesionlab.data.transforms import loader_augmentation
from lesionlab.engine.core.quiet import quiet
from lesionlab.engine.core.sibling_calibration import sibling_calibration
from lesionlab.engine.core.skeleton import evaluate_test, finalize, write_run_data
from lesionlab.models.classifier import create_model, default_normalisation
from lesionlab.models.metadata import MetadataSpec, encode_split_metadata, sample_metadata
from lesionlab.reports.run_report import write_run_report
from lesionlab.runs import RunPaths, TrainResult, discards_unstarted_runs
from lesionlab.training.callbacks import HistoryWriter
from lesionlab.training.distributed import (
    ShardSampler,
    SplitConsistency,
    SyncInferenceWeights,
    ignore_in_ddp,
    process_rank,
    run_dir_for_rank,
    split_fingerprint,
)
from lesionlab.training.frozen_head import uses_cached_head
from lesionlab.training.losses import loss_from_config
from lesionlab.training.module import LesionModule
from lesionlab.training.resampling import TrainingSet, assert_train_only
from lesionlab.training.resume import ResumeState, check_resumable, drop_resume_state
from lesionlab.training.staged import fit_model
from lesionlab.training.train_set import build_training_set, training_dataset, training_sampler, uses_feature_smote
from lesionlab.training.trainer_factory import best_checkpoint, last_checkpoint, monitor_mode, trainer_maker
from lesionlab.training.validation import check_component_names

logger = logging.getLogger(__name__)


def default_workers(requested: int) -> int:
    """-1 → one loader worker per spare core (none on a 1-2 core machine, where workers fight the model)."""
    if requested >= 0:
        return requested
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return 0 if cores <= 2 else min(8, cores // 2)


def make_loaders(data: PreparedData, cfg: ExperimentConfig, training_set: TrainingSet | None = None,
                 metadata: np.ndarray | None = None,
                 metadata_spec: MetadataSpec | None = None) -> tuple[DataLoader, DataLoader]:
    targets = data.targets()
    tr, va = data.indices("train"), data.indices("val")
    aug = loader_augmentation(cfg.train, cfg.data.image_size)  # None: augmented in batches by the module
    ts = training_set or build_training_set(data, cfg)  # under-/over-sampling, SMOTE: training split only
    assert_train_only(ts.positions, tr, np.concatenate([va, data.indices("test")]))
    workers = default_workers(cfg.train.trainer.num_workers)
    common = {"num_workers": workers, "persistent_workers": workers > 0, "pin_memory": torch.cuda.is_available()}
    train_meta = None if metadata is None else sample_metadata(metadata, metadata_spec, ts.positions,
                                                                len(ts.synthetic_targets))
    sources = data.table["source"].to_numpy() if "source" in data.table else None  # several populations
    train_ds, sampler = training_dataset(data, ts, aug, metadata=train_meta), training_sampler(cfg, ts, sources)
    val_ds = ArrayDataset(data.images, data.rows[va], targets[va], None,
                          metadata=None if metadata is None else metadata[va])
    drop_last = len(train_ds) > cfg.train.batch_size  # a last batch of 1 breaks BatchNorm
    return (DataLoader(train_ds, batch_size=cfg.train.batch_size, shuffle=sampler is None, sampler=sampler,
                       drop_last=drop_last, **common),
            DataLoader(val_ds, batch_size=cfg.eval.batch_size, sampler=ShardSampler(val_ds), **common))  # DDP: unpadded


@quiet  # as quiet from Python as on the command line
@discards_unstarted_runs
def train(cfg: ExperimentConfig, run: RunPaths | None = None, *, resume: bool = False) -> TrainResult:
    """Run one experiment end to end and return its run directory and test metrics.

    ``resume``: ``run`` is a killed run of ``cfg``; fitting continues from its ``checkpoints/last.ckpt``.
    """
    t0 = time.perf_counter()
    L.seed_everything(cfg.train.seed, workers=True, verbose=False)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    check_component_names(cfg)  # an unknown loss/optimizer/sampler/... name fails before any data is loaded
    rank = process_rank()  # DDP: every rank runs this function; only rank 0 writes the run
    resume_from = check_resumable(run.root, cfg) if resume and run is not None else None
    if resume and resume_from is None:
        raise ValueError("train(resume=True) needs the run directory to resume")
    run = run or (RunPaths(run_dir_for_rank(rank)) if rank else RunPaths.create(cfg.output_dir, cfg.name))
    cfg = replace(cfg, data=absolute_data_config(cfg.data),  # post-hoc commands may run from any directory
                  eval=replace(cfg.eval, mask_dir=absolute_path(cfg.eval.mask_dir)))
    save_config(cfg, run.config)
    logger.info("Run directory: %s", run.root)

    data = prepare_data(cfg.data, progress=cfg.train.progress)
    calibration = None
    if cfg.train.fit_on == "train+val":  # a refit: validation lesions train too; the sibling's calibration ships
        calibration = sibling_calibration(cfg.train.calibration_from or "", cfg, data)
        data = with_validation_in_training(data)
    t_data = time.perf_counter() - t0
    table, classes = data.table, data.dataset.class_names
    check_no_leakage(table, table["split"])  # again, right before training: nothing may have changed it
    counts, summary = write_run_data(run, data)

    train_counts = counts.loc[list(classes), "train"].to_numpy()
    meta_spec, meta = encode_split_metadata(cfg.model, table)  # model.metadata: fitted on the training split
    model = create_model(cfg.model, len(classes), metadata_spec=meta_spec)
    mean, std = default_normalisation(model, cfg.model.pretrained or bool(cfg.model.weights))
    module = LesionModule(model, loss_from_config(cfg.train, train_counts), cfg.train, len(classes), mean, std)
    training_set = build_training_set(data, cfg, run)
    train_loader, val_loader = make_loaders(data, cfg, training_set, metadata=meta, metadata_spec=meta_spec)
    if calibration is not None:  # a refit validates nothing and ships its last epoch
        val_loader = None

    mode = monitor_mode(cfg.train.monitor)
    ckpt = best_checkpoint(cfg.train, run.checkpoints)  # the best weights (weights only): what the run ships
    callbacks: list[L.Callback] = [*([ckpt] if val_loader is not None else []), HistoryWriter(run.history),
                                   SplitConsistency(split_fingerprint(table)), SyncInferenceWeights()]
    single_fit = not cfg.train.stages and not uses_feature_smote(cfg) and not uses_cached_head(cfg)
    if cfg.train.trainer.save_last and single_fit:  # the full state of every epoch, for `lesionlab train --resume`
        callbacks += [last_checkpoint(run.checkpoints), ResumeState()]
    ignore_in_ddp(module)  # the weight EMA is not trained by gradients
    if cfg.train.patience:
        callbacks.append(EarlyStopping(monitor=cfg.train.monitor, mode=mode, patience=cfg.train.patience))
    make_trainer = trainer_maker(cfg.train, run.root)
    t1 = time.perf_counter()
    fit_model(module, train_loader, val_loader, cfg, callbacks=callbacks, make_trainer=make_trainer, data=data,
              training_set=training_set, run_root=run.root, ckpt_path=resume_from, metadata=meta)
    t_fit = time.perf_counter() - t1
    if rank:  # test evaluation, calibration and artifacts: rank 0 only
        return TrainResult(run, {}, {"data": t_data, "fit": t_fit})

    final = finalize(module, ckpt.best_model_path if val_loader is not None else None, run, cfg, data, mean, std,
                     metadata=meta, calibration=calibration)
    best_epoch = final.best_epoch

    if not cfg.eval.test:  # a recipe search: judged on validation, the test split is never predicted
        return _validation_only(run, cfg, best_epoch, {"data": t_data, "fit": t_fit,
                                                       "total": time.perf_counter() - t0})
    t2 = time.perf_counter()
    metrics = evaluate_test(run, final, data, cfg, metadata=meta)
    t_eval = time.perf_counter() - t2
    seconds = {"data": t_data, "fit": t_fit, "evaluate": t_eval, "total": time.perf_counter() - t0}
    (run.root / "timings.json").write_text(json.dumps(seconds, indent=2))
    write_run_report(run, metrics, cfg=cfg, split_counts=counts, summary=summary, seconds=seconds,
                     best_epoch=best_epoch)
    logger.info("Test balanced accuracy %.4f, macro AUC %.4f (test-time augmentation: %s); report: %s",
                metrics["balanced_accuracy"], metrics["auc_macro"], cfg.eval.tta, run.report)
    drop_resume_state(run.root)
    return TrainResult(run, metrics, seconds)


def _validation_only(run: RunPaths, cfg: ExperimentConfig, best_epoch: int, seconds: dict[str, float]) -> TrainResult:
    """``eval.test=false``: the best epoch's validation figures (``val_metrics.json``); no test prediction."""
    history = pd.read_csv(run.history)
    best = history.loc[history["epoch"] == best_epoch].iloc[-1]
    metrics = {"best_epoch": best_epoch, "epochs_run": len(history),
               **{k: float(best[k]) for k in ("val_bal_acc", "val_auc", "val_loss", "train_bal_acc") if k in best}}
    (run.root / "val_metrics.json").write_text(json.dumps(metrics, indent=2))
    (run.root / "timings.json").write_text(json.dumps(seconds, indent=2))
    val = metrics.get("val_bal_acc", float("nan"))
    if not math.isnan(val):
        logger.info("Validation balanced accuracy %.4f (epoch %d); test split untouched (eval.test=false)", val,
                    best_epoch)
    else:  # a refit: its validation lesions trained it
        logger.info("Finished %d epochs with no validation split; test split not scored by this run (eval.test=false)",
                    len(history))
    drop_resume_state(run.root)
    return TrainResult(run, metrics, seconds)


__all__ = ["TrainResult", "default_workers", "make_loaders", "train"]
