"""``train.refit``: a train-only run followed by its refit on training + validation lesions, as one job.

The train-only run chooses nothing on test (``eval.test`` off): its validation split picks the best epoch and fits the
temperature, triage thresholds and unsure threshold. The refit (:func:`lesionlab.engine.calibration_source.
refit_config`) then trains the same recipe on the training + validation lesions for the full ``train.epochs``, ships
that calibration, and is the one model evaluated on the held-out test split (unless the config says
``eval.test=false``). ``make run`` trains the default this way. The train-only run's saved config keeps
``train.refit=true``, so ``lesionlab train --resume`` of a killed train-only run goes on to the refit.

With ``train.refit_ensemble`` the job ships both fits as one equal-weight ensemble (``ensemble.json`` in a third
folder, :mod:`lesionlab.engine.fits_ensemble`): the refit is then not scored alone and the ensemble is the one model
evaluated on the test split. The configs' recipe search measured on validation what a second member of the recipe
adds (docs/results/recipe-search-notes.md).

Only ``lesionlab train`` reads ``train.refit``; sweeps, ablations and studies train the train-only run alone.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from lesionlab.config import ConfigError, ExperimentConfig, load_run_config
from lesionlab.engine.calibration_source import refit_config
from lesionlab.engine.fits_ensemble import ensemble_of_fits
from lesionlab.engine.train import train
from lesionlab.runs import TrainResult


@dataclass(frozen=True)
class RefitJob:
    sibling: TrainResult  # the train-only run (validation figures only)
    refit: TrainResult  # the refit on training + validation lesions
    ensemble: TrainResult | None = None  # train.refit_ensemble: both fits as one model

    @property
    def shipped(self) -> TrainResult:
        """The job's model, the one evaluated on the test split: the ensemble when there is one, else the refit."""
        return self.ensemble or self.refit

    @property
    def fit_seconds(self) -> float:
        """Training wall time of both fits."""
        return self.sibling.seconds["fit"] + self.refit.seconds["fit"]


def check_refit_job(cfg: ExperimentConfig) -> None:
    """Refuse, before anything is written, a config whose train-only run could not be refitted."""
    split, tr = cfg.data.split, cfg.train
    problems = [
        (tr.fit_on != "train", "train.refit starts from a train-only run: set train.fit_on=train (the refit itself "
                               "trains on train+val)"),
        (split.folds >= 2 and split.val_fold is None and not split.column,
         "train.refit refits one train-only run; data.split.folds asks for a cross-validation ensemble, whose "
         "members already train on every non-test lesion: set one of them off"),
        (not split.column and split.val <= 0,
         "train.refit needs a validation split to calibrate the refit with (data.split.val > 0)"),
        (tr.schedule.name == "plateau", "train.refit: the refit has no validation metric for "
                                        "train.schedule.name=plateau to watch: use a fixed schedule (onecycle, cosine, "
                                        "step, constant)"),
        (_multi_process(cfg), "train.refit runs its two fits in one process: with several devices or nodes, train "
                              "with train.refit=false, then `lesionlab train --refit RUN_DIR` with the same devices"),
        (tr.refit_ensemble and cfg.model.metadata,
         "train.refit_ensemble: an ensemble cannot feed patient metadata to its members yet; set "
         "train.refit_ensemble=false for a metadata-fusion model (the refit alone is then shipped)"),
    ]
    for failed, message in problems:
        if failed:
            raise ConfigError(message)


def _multi_process(cfg: ExperimentConfig) -> bool:
    devices = str(cfg.train.trainer.devices)
    many = (devices.isdigit() and int(devices) > 1) or "," in devices or devices == "-1"
    return many or cfg.train.trainer.num_nodes > 1 or int(os.environ.get("WORLD_SIZE", "1")) > 1


def refit_of(sibling: TrainResult, cfg: ExperimentConfig) -> RefitJob:
    """The rest of the job after a finished train-only run: its refit, then (``train.refit_ensemble``) the ensemble
    of both. The one model shipped is evaluated on the test split when ``cfg.eval.test`` is on."""
    score_refit = cfg.eval.test and not cfg.train.refit_ensemble
    refit = train(refit_config(sibling.run.root, [] if score_refit else ["eval.test=false"]))
    if not cfg.train.refit_ensemble:
        return RefitJob(sibling, refit)
    return RefitJob(sibling, refit, ensemble_of_fits(sibling, refit, cfg.name, test=cfg.eval.test))


def train_and_refit(cfg: ExperimentConfig) -> RefitJob:
    """Train ``cfg`` on its training split (test untouched), then refit it on training + validation lesions."""
    check_refit_job(cfg)
    sibling = train(replace(cfg, eval=replace(cfg.eval, test=False)))
    return refit_of(sibling, cfg)


def resumed_refit_job(sibling: TrainResult, cfg: ExperimentConfig) -> RefitJob | None:
    """After ``--resume`` of a train-only run that belongs to a refit job: its refit, evaluated on the test split
    (the train-only run's saved ``eval.test`` is the job's own switch-off, not the user's); None when it is not one."""
    if not cfg.train.refit or cfg.train.fit_on != "train" or not Path(sibling.run.model).is_file():
        return None
    return refit_of(sibling, replace(cfg, eval=replace(cfg.eval, test=True)))


def resumed_refit(refit: TrainResult, cfg: ExperimentConfig) -> RefitJob | None:
    """After ``--resume`` of a killed refit whose job ships both fits as one ensemble (its train-only run's config
    says ``train.refit`` and ``train.refit_ensemble``): that ensemble, evaluated on the test split; None otherwise."""
    source = Path(cfg.train.calibration_from) if cfg.train.calibration_from else None
    if cfg.train.fit_on != "train+val" or source is None or not (source / "config.yaml").is_file():
        return None
    job_cfg = load_run_config(source / "config.yaml")
    if not (job_cfg.train.refit and job_cfg.train.refit_ensemble):
        return None
    sibling = TrainResult.from_directory(source)
    return RefitJob(sibling, refit, ensemble_of_fits(sibling, refit, job_cfg.name, test=True))


__all__ = ["RefitJob", "check_refit_job", "resumed_refit", "resumed_refit_job", "train_and_refit"]
