"""Experiment loggers by name (``train.trainer.logger``): Lightning's own CSV, TensorBoard and MLflow loggers.

Every logger writes under the run directory (``logs/csv``, ``logs/tensorboard``, ``mlruns``); ``history.csv`` is
written by :class:`lesionlab.training.callbacks.HistoryWriter` whatever is chosen. Lightning and the logger
back-ends are imported only when a logger is built, so validating a config stays cheap.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from lesionlab.registry import Registry

#: ``(run_root) -> Lightning logger | None``; ``None`` (``none``) means no experiment logger.
LOGGERS: Registry[Callable[[Path], Any]] = Registry("logger")

LOG_DIR = "logs"
MLFLOW_DIR = "mlruns"
MLFLOW_EXPERIMENT = "lesionlab"


@LOGGERS.register("csv", help="Lightning CSVLogger: logs/csv/metrics.csv")
def csv_logger(run_root: Path) -> Any:
    from lightning.pytorch.loggers import CSVLogger

    return CSVLogger(save_dir=run_root / LOG_DIR, name="csv", version="")


@LOGGERS.register("tensorboard", help="Lightning TensorBoardLogger: logs/tensorboard/ (pip install tensorboard)")
def tensorboard_logger(run_root: Path) -> Any:
    from lightning.pytorch.loggers import TensorBoardLogger

    return TensorBoardLogger(save_dir=run_root / LOG_DIR, name="tensorboard", version="", default_hp_metric=False)


@LOGGERS.register("mlflow", help="Lightning MLFlowLogger to a local file store: mlruns/ (pip install mlflow-skinny)")
def mlflow_logger(run_root: Path) -> Any:
    import os

    from lightning.pytorch.loggers import MLFlowLogger

    # MLflow >= 3.x refuses the file store (in "maintenance mode") unless this is set; a run's own mlruns/ folder
    # needs no database or server.
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return MLFlowLogger(experiment_name=MLFLOW_EXPERIMENT, run_name=run_root.name,
                        tracking_uri=(run_root / MLFLOW_DIR).resolve().as_uri())


@LOGGERS.register("none", help="no experiment logger (history.csv is still written)")
def no_logger(run_root: Path) -> None:
    return None


def check_logger_names(names: Sequence[str]) -> None:
    """Unknown names raise :class:`~lesionlab.registry.UnknownNameError` listing the valid ones."""
    for name in names:
        LOGGERS.get(name)
    if "none" in {n.lower() for n in names} and len(names) > 1:
        raise ValueError(f"'none' cannot be combined with other loggers: {list(names)}")


def create_loggers(names: Sequence[str], run_root: Path | None) -> list[Any]:
    """The Lightning loggers ``names`` ask for, writing under ``run_root`` (none without a run directory)."""
    if run_root is None:
        return []
    check_logger_names(names)
    loggers = [LOGGERS.get(name)(Path(run_root)) for name in names]
    return [lg for lg in loggers if lg is not None]


__all__ = ["LOGGERS", "check_logger_names", "create_loggers"]
