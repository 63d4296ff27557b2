"""``lesionlab train``: prepare data, fit with Lightning, evaluate on the held-out test split, write the report."""

from __future__ import annotations

import json
import logging
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
from lesionlab.data.prepare import PreparedData, prepare_data
from lesionlab.data.roots import absolute_data_config, absolute_path
from lesionlab.data.splits import check_no_leakage, check_test_unseen, split_summary
from lesionlab.data.torch_data import ArrayDataset
from lesionlab.data.transforms import loader_augmentation
from lesionlab.engine.finalize import tune_on_validation, write_depth_artifacts
from lesionlab.engine.ood import fit_run_detector, write_ood_summary
from lesionlab.inference.calibration import probs_from_view_logits
from lesionlab.inference.predict import predict_probs, predict_view_logits
from lesionlab.inference.unsure import with_unsure_threshold
from lesionlab.models.checkpoint import Preprocessing, save_model
from lesionlab.models.classifier import create_model, default_normalisation
from lesionlab.models.metadata import MetadataSpec, encode_split_metadata, sample_metadata
from lesionlab.reports.artifacts import write_evaluation
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
from lesionlab.training.frozen_head import CachedFeatureHead, uses_cached_head
from lesionlab.training.losses import loss_from_config
from lesionlab.training.module import LesionModule
from lesionlab.training.resampling import TrainingSet, assert_train_only
from lesionlab.training.resume import ResumeState, check_resumable, drop_resume_state
from lesionlab.training.staged import fit_model, fit_stages
from lesionlab.training.train_set import build_training_set, training_dataset, training_sampler, uses_feature_smote
from lesionlab.training.trainer_factory import best_checkpoint, last_checkpoint, monitor_mode, trainer_maker
from lesionlab.training.trainer_factory import best_epoch as history_best_epoch
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
    train_ds, sampler = training_dataset(data, ts, aug, metadata=train_meta), training_sampler(cfg, ts)
    val_ds = ArrayDataset(data.images, data.rows[va], targets[va], None,
                          metadata=None if metadata is None else metadata[va])
    drop_last = len(train_ds) > cfg.train.batch_size  # a last batch of 1 breaks BatchNorm
    return (DataLoader(train_ds, batch_size=cfg.train.batch_size, shuffle=sampler is None, sampler=sampler,
                       drop_last=drop_last, **common),
            DataLoader(val_ds, batch_size=cfg.eval.batch_size, sampler=ShardSampler(val_ds), **common))  # DDP: unpadded


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
    t_data = time.perf_counter() - t0
    table, classes = data.table, data.dataset.class_names
    check_no_leakage(table, table["split"])  # again, right before training: nothing may have changed it
    patients = ["patient_id"] if table["patient_id"].notna().any() else []  # the seen-data guard compares them too
    table[["image_id", "lesion_id", *patients, "label", "split", *(["fold"] if "fold" in table else [])]].to_csv(
        run.splits, index=False)
    if len(data.skipped):
        data.skipped.to_csv(run.skipped, index=False)
    counts = split_summary(table, table["split"], classes)
    summary = {**data.dataset.summary(), "split_counts": counts.to_dict(), "skipped_images": len(data.skipped),
               "cache": str(data.arrays.directory), "cache_built": data.arrays.built,
               "cache_seconds": data.arrays.seconds}
    run.data_summary.write_text(json.dumps(summary, indent=2, default=str))

    train_counts = counts.loc[list(classes), "train"].to_numpy()
    meta_spec, meta = encode_split_metadata(cfg.model, table)  # model.metadata: fitted on the training split
    model = create_model(cfg.model, len(classes), metadata_spec=meta_spec)
    mean, std = default_normalisation(model, cfg.model.pretrained or bool(cfg.model.weights))
    module = LesionModule(model, loss_from_config(cfg.train, train_counts), cfg.train, len(classes), mean, std)
    training_set = build_training_set(data, cfg, run)
    train_loader, val_loader = make_loaders(data, cfg, training_set, metadata=meta, metadata_spec=meta_spec)

    mode = monitor_mode(cfg.train.monitor)
    ckpt = best_checkpoint(cfg.train, run.checkpoints)  # the best weights (weights only): what the run ships
    callbacks: list[L.Callback] = [ckpt, HistoryWriter(run.history), SplitConsistency(split_fingerprint(table)),
                                   SyncInferenceWeights()]
    single_fit = not cfg.train.stages and not uses_feature_smote(cfg) and not uses_cached_head(cfg)
    if cfg.train.trainer.save_last and single_fit:  # the full state of every epoch, for `lesionlab train --resume`
        callbacks += [last_checkpoint(run.checkpoints), ResumeState()]
    ignore_in_ddp(module)  # the weight EMA is not trained by gradients
    if cfg.train.patience:
        callbacks.append(EarlyStopping(monitor=cfg.train.monitor, mode=mode, patience=cfg.train.patience))
    make_trainer = trainer_maker(cfg.train, run.root)
    t1 = time.perf_counter()
    if uses_cached_head(cfg) and not uses_feature_smote(cfg):  # frozen backbone: the head trains on cached features
        fit_stages(module, train_loader, val_loader, cfg.train, callbacks=callbacks, make_trainer=make_trainer,
                   head_trainer=CachedFeatureHead(data, training_set, cfg, mean, std, meta))
    else:
        fit_model(module, train_loader, val_loader, cfg, callbacks=callbacks, make_trainer=make_trainer,
                  data=data, training_set=training_set, run_root=run.root,
                  ckpt_path=resume_from)  # one fit, or staged fine-tuning
    t_fit = time.perf_counter() - t1
    if rank:  # test evaluation, calibration and artefacts: rank 0 only
        return TrainResult(run, {}, {"data": t_data, "fit": t_fit})

    if ckpt.best_model_path:
        state = torch.load(ckpt.best_model_path, map_location="cpu", weights_only=False)["state_dict"]
        module.load_state_dict(state)
    prep = Preprocessing(image_size=cfg.data.image_size, crop=cfg.data.crop, mean=mean, std=std,
                         class_names=tuple(classes), taxonomy=data.dataset.taxonomy.name, tta=cfg.eval.tta)
    best_epoch = history_best_epoch(pd.read_csv(run.history), cfg.train.monitor)
    final_model = module.inference_model().cpu()
    prep, val_outputs = tune_on_validation(final_model, data, prep, cfg, metadata=meta)  # temperature, thresholds
    val = data.indices("val")  # the unsure threshold is chosen on validation images, never on test images
    prep = with_unsure_threshold(prep, predict_probs(final_model, data.images, mean, std, indices=data.rows[val],
                                                     batch_size=cfg.eval.batch_size, temperature=prep.temperature,
                                                     tta=cfg.eval.tta, metadata=None if meta is None else meta[val]),
                               data.targets()[val])
    detector = fit_run_detector(final_model, data, prep, cfg.eval.ood, cfg.eval.ood_coverage, meta,
                                cfg.eval.batch_size)  # training features, threshold on validation
    final_model.ood_detector = detector
    save_model(run.model, final_model, cfg.model, prep,
               extra={"best_epoch": best_epoch, "dataset": data.dataset.name,
                      "train_images": len(data.indices("train"))},
               ood=detector.to_dict() if detector is not None else None)

    if not cfg.eval.test:  # a recipe search: judged on validation, the test split is never predicted
        return _validation_only(run, cfg, best_epoch, {"data": t_data, "fit": t_fit,
                                                       "total": time.perf_counter() - t0})
    t2 = time.perf_counter()
    test = data.indices("test")
    check_test_unseen(table, test)  # raises LeakageError (an assert would vanish under `python -O`)
    test_logits = predict_view_logits(final_model, data.images, mean, std, indices=data.rows[test],
                                      batch_size=cfg.eval.batch_size, tta=cfg.eval.tta,
                                      metadata=None if meta is None else meta[test])
    probs = probs_from_view_logits(test_logits, prep.temperature)  # what the saved model (and `evaluate`) gives
    metrics = write_evaluation(run.root, table.iloc[test], data.targets()[test], probs, classes, cfg.eval.topk,
                               thresholds=prep.thresholds, sensitivity_target=cfg.eval.triage_sensitivity)
    write_depth_artifacts(run.root, final_model, data, test, test_logits, prep, cfg, val_outputs)
    write_ood_summary(run.root, final_model, data, prep, meta)  # share of test lesions the detector flags
    t_eval = time.perf_counter() - t2
    seconds = {"data": t_data, "fit": t_fit, "evaluate": t_eval, "total": time.perf_counter() - t0}
    (run.root / "timings.json").write_text(json.dumps(seconds, indent=2))
    write_run_report(run, metrics, cfg=cfg, split_counts=counts, summary=summary, seconds=seconds,
                     best_epoch=best_epoch)
    logger.info("Test balanced accuracy %.4f, macro AUC %.4f; report: %s", metrics["balanced_accuracy"],
                metrics["auc_macro"], run.report)
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
    logger.info("Validation balanced accuracy %.4f (epoch %d); test split untouched (eval.test=false)",
                metrics.get("val_bal_acc", float("nan")), best_epoch)
    drop_resume_state(run.root)
    return TrainResult(run, metrics, seconds)


def load_split_table(run: RunPaths) -> pd.DataFrame:
    return pd.read_csv(run.splits, dtype={"image_id": str, "lesion_id": str})


__all__ = ["TrainResult", "default_workers", "load_split_table", "make_loaders", "train"]
