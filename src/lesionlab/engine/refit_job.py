"""``train.refit``: a train-only run followed by its refit on training + validation lesions, as one job.

The train-only run chooses nothing on test (``eval.test`` off): its validation split picks the best epoch and fits the
temperature, triage thresholds and unsure threshold. The refit (:func:`lesionlab.engine.calibration_source.
refit_config`) then trains the same recipe on the training + validation lesions for the full ``train.epochs``, ships
that calibration, and is the one model evaluated on the held-out test split. ``make run`` trains the default this way.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from lesionlab.config import ExperimentConfig
from lesionlab.engine.calibration_source import refit_config
from lesionlab.engine.train import train
from lesionlab.runs import TrainResult


@dataclass(frozen=True)
class RefitJob:
    sibling: TrainResult  # the train-only run (validation figures only)
    refit: TrainResult  # the shipped model, evaluated on the test split

    @property
    def fit_seconds(self) -> float:
        """Training wall time of both fits."""
        return self.sibling.seconds["fit"] + self.refit.seconds["fit"]


def train_and_refit(cfg: ExperimentConfig) -> RefitJob:
    """Train ``cfg`` on its training split (test untouched), then refit it on training + validation lesions."""
    sibling_cfg = replace(cfg, train=replace(cfg.train, refit=False), eval=replace(cfg.eval, test=False))
    sibling = train(sibling_cfg)
    return RefitJob(sibling, train(refit_config(sibling.run.root)))


__all__ = ["RefitJob", "train_and_refit"]
