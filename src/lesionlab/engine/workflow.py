"""The model workflow of ``lesionlab train``: plan the route once, then run its steps.

:func:`plan_training` reads the config and the command line (``--refit RUN``, ``--resume RUN``) and picks one route
before anything is written; :func:`run_training` performs it. Every fit is one call of
:func:`lesionlab.engine.train.train`; every operating point is fitted by
:func:`lesionlab.evaluation.operating_point_fit.fit_operating_point` on images the fit never trained on.

========================  ===============================================================================
route                     steps
========================  ===============================================================================
``single``                one fit on the training split; validation picks the epoch and fits the operating
                          point; the test split is scored once (``train.refit=false``)
``refit``                 the train-only fit (test untouched), then its refit on training + validation lesions
                          for the full ``train.epochs``, shipping the train-only fit's operating point; the refit
                          is scored once (``train.refit=true``)
``refit-ensemble``        as ``refit``, then both fits as one equal-weight ensemble, the one model scored
                          (``train.refit_ensemble=true``: the default config)
``refit-of-run``          ``--refit RUN``: the refit of a finished train-only run (e.g. one trained on several
                          devices, which cannot refit in the same process)
``resume``                ``--resume RUN``: continue a killed fit, then whatever its job still has to do
========================  ===============================================================================

Only ``lesionlab train`` reads ``train.refit``; sweeps, ablations and studies train the train-only fit alone.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from lesionlab.config import ConfigError, ExperimentConfig, load_run_config, read_run_config
from lesionlab.engine.ensemble import ensemble_runs
from lesionlab.engine.train import train
from lesionlab.runs import RunPaths, TrainResult

logger = logging.getLogger(__name__)

#: The two members of a refit job's ensemble, as its ``members.csv`` names them.
ENSEMBLE_ROLES = ("train-only run (picks the epoch; calibrates both)", "refit on training + validation lesions")

ROUTES = {
    "single": ("fit on the training split", "fit the operating point on validation", "score the test split once"),
    "refit": ("train-only fit (validation picks the epoch, fits the operating point; test untouched)",
              "refit on training + validation lesions with that operating point", "score the refit once"),
    "refit-ensemble": ("train-only fit (validation picks the epoch, fits the operating point; test untouched)",
                       "refit on training + validation lesions with that operating point",
                       "ensemble both fits", "score the ensemble once"),
    "refit-of-run": ("refit RUN's recipe on its training + validation lesions with RUN's operating point",
                     "score the refit once"),
    "resume": ("continue the killed fit from its last checkpoint", "then the rest of its job"),
}


@dataclass(frozen=True)
class TrainingPlan:
    """One ``lesionlab train`` call's route, decided before anything is written."""

    route: str
    cfg: ExperimentConfig
    run_dir: Path | None = None  # --resume RUN

    @property
    def steps(self) -> tuple[str, ...]:
        return ROUTES[self.route]

    def describe(self) -> str:
        return f"{self.route}: " + " → ".join(self.steps)


@dataclass(frozen=True)
class TrainingOutcome:
    """What a route produced; ``shipped`` is the one model scored on the test split."""

    shipped: TrainResult
    sibling: TrainResult | None = None  # the train-only fit of a refit job
    refit: TrainResult | None = None
    ensemble: TrainResult | None = None  # train.refit_ensemble: both fits as one model

    @property
    def fit_seconds(self) -> float:
        """Training wall time of a refit job's two fits."""
        return sum(r.seconds.get("fit", 0.0) for r in (self.sibling, self.refit) if r is not None)


def plan_training(cfg: ExperimentConfig | None = None, *, refit_of: str | Path | None = None,
                  resume: str | Path | None = None, overrides: Sequence[str] = ()) -> TrainingPlan:
    """The route for ``cfg`` (or for ``--refit RUN`` / ``--resume RUN`` with where-it-runs ``overrides``).
    Refuses a config whose route could not finish, before anything is written."""
    if resume is not None:
        from lesionlab.training.resume import ResumeError, check_resumable, resume_config

        run_dir = Path(resume)
        if not run_dir.is_dir():
            raise ResumeError(f"cannot resume {run_dir}: no such run directory")
        cfg = resume_config(run_dir, list(overrides))
        check_resumable(run_dir, cfg)  # a finished run or a missing checkpoint is refused before anything runs
        return TrainingPlan("resume", cfg, run_dir)
    if refit_of is not None:
        return TrainingPlan("refit-of-run", refit_config(refit_of, overrides))
    if cfg is None:
        raise ValueError("plan_training needs a config, refit_of= or resume=")
    from lesionlab.engine.cv import wants_cv

    if cfg.train.refit:
        check_refit_job(cfg)
        return TrainingPlan("refit-ensemble" if cfg.train.refit_ensemble else "refit", cfg)
    if wants_cv(cfg):  # one route per job: the K-fold ensemble is `lesionlab cv`'s (run_cv)
        raise ConfigError(f"data.split.folds={cfg.data.split.folds} asks for a cross-validation ensemble: train it "
                          "with `lesionlab cv` (same --config and overrides), or set data.split.val_fold to train one "
                          "fold")
    return TrainingPlan("single", cfg)


def run_training(plan: TrainingPlan) -> TrainingOutcome:
    """Perform ``plan``'s steps."""
    logger.info("Training route %s", plan.describe())
    cfg = plan.cfg
    if plan.route in ("single", "refit-of-run"):
        return TrainingOutcome(train(cfg))
    if plan.route in ("refit", "refit-ensemble"):
        sibling = train(replace(cfg, eval=replace(cfg.eval, test=False)))
        return refit_of(sibling, cfg)
    if plan.route == "resume":
        assert plan.run_dir is not None
        result = train(cfg, RunPaths(plan.run_dir), resume=True)
        job = None
        if result.metrics:  # the train-only fit of a refit job, or the refit of one that ships both as an ensemble
            job = resumed_train_only(result, cfg) or resumed_refit(result, cfg)
        return job or TrainingOutcome(result)
    raise ValueError(f"unknown route {plan.route!r}; known: {sorted(ROUTES)}")


def refit_config(run_dir: str | Path, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """``run_dir``'s recipe as a refit: its config on training + validation lesions, calibrated by ``run_dir``.

    ``overrides`` (key=value) apply on top, e.g. ``output_dir=...``; the name gains a ``-refit`` suffix."""
    run_dir = Path(run_dir).expanduser()
    if not (run_dir / "config.yaml").is_file():
        raise ConfigError(f"cannot refit {run_dir}: no config.yaml (not a LesionLab run directory)")
    name = read_run_config(run_dir / "config.yaml").get("name", "run")
    return load_run_config(run_dir / "config.yaml", overrides=[
        f"name={name}-refit", "train.fit_on=train+val", f"train.calibration_from={run_dir.resolve()}",
        "train.patience=0", "train.refit=false", "train.refit_ensemble=false", "eval.test=true", *overrides])


def check_refit_job(cfg: ExperimentConfig) -> None:
    """Refuse, before anything is written, a config whose train-only fit could not be refitted."""
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


def refit_of(sibling: TrainResult, cfg: ExperimentConfig) -> TrainingOutcome:
    """The rest of a refit job after its finished train-only fit: the refit, then (``train.refit_ensemble``) the
    ensemble of both. The one model shipped is scored on the test split when ``cfg.eval.test`` is on."""
    score_refit = cfg.eval.test and not cfg.train.refit_ensemble
    refit = train(refit_config(sibling.run.root, [] if score_refit else ["eval.test=false"]))
    if not cfg.train.refit_ensemble:
        return TrainingOutcome(refit, sibling, refit)
    ensemble = ensemble_of_fits(sibling, refit, cfg.name, test=cfg.eval.test)
    return TrainingOutcome(ensemble, sibling, refit, ensemble)


def ensemble_of_fits(sibling: TrainResult, refit: TrainResult, name: str, *, test: bool = True) -> TrainResult:
    """A refit job's two fits as one equal-weight ensemble, ``{name}-ensemble-STAMP/`` beside the refit (members as
    ``../RUN/model.pt``); with ``test``, scored once on the held-out test split. Its operating point is the train-only
    fit's, as the refit ships it: no validation lesion is left that neither member trained on."""
    return ensemble_runs([sibling.run.root, refit.run.root], refit.run.root.parent, f"{name}-ensemble",
                         thresholds_from=refit.run.root, roles=ENSEMBLE_ROLES, test=test,
                         title=f"LesionLab run: {name} (train-only run + refit, one ensemble)",
                         best_epoch=int(sibling.metrics.get("best_epoch", 0)))


def resumed_train_only(sibling: TrainResult, cfg: ExperimentConfig) -> TrainingOutcome | None:
    """After ``--resume`` of a refit job's train-only fit: its refit, scored on the test split (the train-only fit's
    saved ``eval.test`` is the job's own switch-off, not the user's); None when it is not one."""
    if not cfg.train.refit or cfg.train.fit_on != "train" or not Path(sibling.run.model).is_file():
        return None
    return refit_of(sibling, replace(cfg, eval=replace(cfg.eval, test=True)))


def resumed_refit(refit: TrainResult, cfg: ExperimentConfig) -> TrainingOutcome | None:
    """After ``--resume`` of a killed refit whose job ships both fits as one ensemble: that ensemble, scored on the
    test split; None otherwise."""
    source = Path(cfg.train.calibration_from) if cfg.train.calibration_from else None
    if cfg.train.fit_on != "train+val" or source is None or not (source / "config.yaml").is_file():
        return None
    job_cfg = load_run_config(source / "config.yaml")
    if not (job_cfg.train.refit and job_cfg.train.refit_ensemble):
        return None
    sibling = TrainResult.from_directory(source)
    ensemble = ensemble_of_fits(sibling, refit, job_cfg.name, test=True)
    return TrainingOutcome(ensemble, sibling, refit, ensemble)


__all__ = ["ROUTES", "TrainingOutcome", "TrainingPlan", "check_refit_job", "ensemble_of_fits", "plan_training",
           "refit_config", "refit_of", "resumed_refit", "resumed_train_only", "run_training"]
