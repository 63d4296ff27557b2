"""``lesionlab distill``: knowledge distillation of a trained teacher (run or ensemble) into a small student.

Loss per batch (Hinton et al. 2015): ``α · T² · KL(softmax(t / T) ‖ softmax(s / T)) + (1 − α) · hard(s, y)``, where
``s`` are the student's logits, ``t`` the teacher's output on the *same augmented images* (logits of a single run,
log of the averaged member probabilities of an ensemble) and ``hard`` the configured, class-weighted loss.

Data and split come from the teacher: its config re-creates the data and the split, which must reproduce the
teacher's recorded test split; the student trains on the teacher's training split only, and both are scored on the
held-out test split that no teacher member ever trained or validated on.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, replace

import lightning as L
import pandas as pd
from torch import nn

from lesionlab.config import ExperimentConfig, save_config
from lesionlab.config.pretraining import DistillConfig
from lesionlab.data.prepare import original_split
from lesionlab.data.splits import check_no_leakage
from lesionlab.data.table import DatasetError
from lesionlab.engine.core.run_data import LoadedRun, load_run, prepare_run_data
from lesionlab.engine.core.skeleton import evaluate_test, finalize, write_run_data
from lesionlab.engine.train import make_loaders
from lesionlab.inference.predict import predict_probs
from lesionlab.models.checkpoint import load_model, read_model_config
from lesionlab.models.classifier import create_model, default_normalisation
from lesionlab.reports.artifacts import write_evaluation
from lesionlab.reports.distill_report import STUDENT_REPORT
from lesionlab.reports.run_report import write_run_report
from lesionlab.runs import RunPaths, discards_unstarted_runs
from lesionlab.training.callbacks import HistoryWriter
from lesionlab.training.distillation import DistillModule, FrozenTeacher
from lesionlab.training.losses import loss_from_config
from lesionlab.training.trainer_factory import best_checkpoint, build_trainer

logger = logging.getLogger(__name__)



@dataclass(frozen=True)
class DistillResult:
    run: RunPaths
    summary: pd.DataFrame  # rows teacher / student
    metrics: dict[str, dict]


def student_experiment(cfg: DistillConfig, teacher_cfg: ExperimentConfig, canonical: str | None = None
                       ) -> ExperimentConfig:
    """The teacher's data, split and task with the student's model, training and evaluation settings.

    The student sees images as the teacher does: a teacher's canonical acquisition chain (``canonical``, e.g. a
    built-in ensemble's) is kept when the teacher's data config names none. With ``init_from`` the student's
    architecture is that model file's.
    """
    data = teacher_cfg.data
    if data.canonical is None and canonical is not None:
        data = replace(data, canonical=canonical)
    model = read_model_config(cfg.init_from) if cfg.init_from else cfg.student
    return replace(teacher_cfg, name=cfg.name, output_dir=cfg.output_dir, data=data, model=model, train=cfg.train,
                   eval=cfg.eval)


def initial_student(cfg: DistillConfig, exp: ExperimentConfig, classes: tuple[str, ...]
                    ) -> tuple[nn.Module, tuple[float, ...], tuple[float, ...]]:
    """The student and its input normalisation: fresh from ``student`` or the weights of ``init_from``."""
    if not cfg.init_from:
        student = create_model(exp.model, len(classes))
        return (student, *default_normalisation(student, exp.model.pretrained or bool(exp.model.weights)))
    student, prep = load_model(cfg.init_from)
    if tuple(prep.class_names) != tuple(classes):
        raise DatasetError(f"init_from {cfg.init_from} predicts {list(prep.class_names)}, the teacher's data "
                           f"{list(classes)}: a student must start from a model of the same classes")
    logger.info("Student starts from %s (%s)", cfg.init_from, exp.model.backbone)
    return student.train(), tuple(prep.mean), tuple(prep.std)


@discards_unstarted_runs
def distill(cfg: DistillConfig) -> DistillResult:
    """Train the student on the teacher's training split and compare both on the teacher's test split."""
    from lesionlab.reports.distill_report import compare_models, write_distill_report

    t0 = time.perf_counter()
    teacher_run: LoadedRun = load_run(cfg.teacher)
    teacher_cfg, data = prepare_run_data(teacher_run, cfg.data_root, progress=cfg.train.progress)
    data = original_split(data)  # a refit teacher: the student still trains on train and is calibrated on val
    exp = student_experiment(cfg, teacher_cfg, teacher_run.prep.canonical)
    classes = tuple(data.dataset.class_names)
    if tuple(teacher_run.prep.class_names) != tuple(classes):
        raise DatasetError(f"teacher classes {teacher_run.prep.class_names} differ from its data's {classes}")
    L.seed_everything(cfg.train.seed, workers=True, verbose=False)
    run = RunPaths.create(cfg.output_dir, cfg.name)
    save_config(exp, run.config)
    save_config(cfg, run.root / "distill_config.yaml")
    table = data.table
    check_no_leakage(table, table["split"])
    counts, summary_info = write_run_data(run, data)

    student, mean, std = initial_student(cfg, exp, classes)
    teacher = FrozenTeacher(teacher_run.model, teacher_run.prep.mean, teacher_run.prep.std)
    hard = loss_from_config(cfg.train, counts.loc[list(classes), "train"].to_numpy())
    module = DistillModule(student, hard, cfg.train, len(classes), mean, std, teacher, temperature=cfg.temperature,
                           alpha=cfg.alpha)
    train_loader, val_loader = make_loaders(data, exp)
    ckpt = best_checkpoint(cfg.train, run.checkpoints)
    trainer = build_trainer(cfg.train, run.root, max_epochs=cfg.train.epochs,
                            callbacks=[ckpt, HistoryWriter(run.history)])
    t1 = time.perf_counter()
    trainer.fit(module, train_loader, val_loader)
    t_fit = time.perf_counter() - t1
    final = finalize(module, ckpt.best_model_path, run, exp, data, mean, std,
                     extra={"distilled_from": str(teacher_run.root)})  # calibration, unsure, OOD: the student's own
    best_epoch = final.best_epoch
    metrics = evaluate_test(run, final, data, exp)  # what the shipped student predicts (TTA, temperature)
    test = data.indices("test")
    teacher_probs = predict_probs(teacher_run.model, data.images, teacher_run.prep.mean, teacher_run.prep.std,
                                  indices=data.rows[test], tta=cfg.eval.tta, temperature=teacher_run.prep.temperature)
    teacher_metrics = write_evaluation(run.root / "teacher_on_test", table.iloc[test], data.targets()[test],
                                       teacher_probs, classes, cfg.eval.topk)
    summary = compare_models(teacher_run.model, final.model, teacher_metrics, metrics, image_size=final.prep.image_size,
                             runs=cfg.latency_runs)
    summary.to_csv(run.root / "distillation.csv")
    seconds = {"fit": t_fit, "total": time.perf_counter() - t0}
    (run.root / "timings.json").write_text(json.dumps(seconds, indent=2))
    write_run_report(run, metrics, cfg=exp, split_counts=counts, summary=summary_info, seconds=seconds,
                     best_epoch=best_epoch)
    run.report.rename(run.root / STUDENT_REPORT)  # report.html becomes the distillation report, linking to it
    write_distill_report(run, cfg, teacher_run.root, summary, metrics, teacher_metrics, exp.model.backbone)
    logger.info("Student %s: balanced accuracy %.4f vs teacher %.4f", exp.model.backbone,
                metrics["balanced_accuracy"], teacher_metrics["balanced_accuracy"])
    return DistillResult(run, summary, {"student": metrics, "teacher": teacher_metrics})
