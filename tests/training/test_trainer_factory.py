"""The one Trainer factory: settings from TrainConfig, best epoch by the monitor's direction, loggers by name."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from lesionlab.config import (
    ConfigError,
    ModelConfig,
    OptimizerConfig,
    ScheduleConfig,
    TrainConfig,
    TrainerConfig,
    load_config,
)
from lesionlab.models.classifier import create_model
from lesionlab.registry import UnknownNameError
from lesionlab.training.callbacks import HistoryWriter
from lesionlab.training.losses import create_loss
from lesionlab.training.module import LesionModule
from lesionlab.training.trainer_factory import best_checkpoint, best_epoch, build_trainer, last_checkpoint

SRC = Path(__file__).resolve().parents[2] / "src" / "lesionlab"


def test_best_epoch_follows_the_monitor_direction() -> None:
    history = pd.DataFrame({"epoch": [1, 2, 3, 4], "val_loss": [0.9, 0.4, 0.5, 1.2],
                            "val_bal_acc": [0.2, 0.6, 0.6, 0.1], "val_auc": [0.5, 0.7, 0.9, 0.8]})
    assert best_epoch(history, "val_loss") == 2  # lowest loss; the old idxmax picked epoch 4, the worst
    assert best_epoch(history, "val_bal_acc") == 2  # highest, first of ties (as ModelCheckpoint keeps it)
    assert best_epoch(history, "val_auc") == 3
    assert best_epoch(history.iloc[:0], "val_loss") == 0


def test_only_the_factory_builds_trainers() -> None:
    """Every ``Trainer`` comes from ``build_trainer``: the copies cannot drift apart again."""
    makers = [p.relative_to(SRC).as_posix() for p in SRC.rglob("*.py")
              if re.search(r"\b(L|lightning|pl)\.Trainer\(|\bTrainer\(", p.read_text())]
    assert makers == ["training/trainer_factory.py"]


def test_trainer_settings_come_from_the_config(tmp_path: Path) -> None:
    cfg = TrainConfig(progress=False, max_time_minutes=2.0, trainer=TrainerConfig(
        accelerator="cpu", devices="1", precision="bf16-mixed", logger=("none",)))
    trainer = build_trainer(cfg, tmp_path, max_epochs=3)
    assert trainer.max_epochs == 3 and trainer.num_nodes == 1 and trainer.precision == "bf16-mixed"
    assert trainer.logger is None and trainer.checkpoint_callback is None  # no stray default checkpoint
    assert trainer.default_root_dir == str(tmp_path)
    best, last = best_checkpoint(cfg, tmp_path), last_checkpoint(tmp_path)
    trainer = build_trainer(cfg, tmp_path, max_epochs=1, callbacks=[best, last])
    assert trainer.checkpoint_callbacks == [best, last]
    assert best.save_weights_only and not last.save_weights_only and best.mode == "max"
    assert best_checkpoint(TrainConfig(monitor="val_loss"), tmp_path).mode == "min"


def _fit(tmp_path: Path, logger: str) -> Path:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (40, 3, 16, 16), dtype=torch.uint8, generator=g)
    y = torch.arange(40) % 3
    cfg = TrainConfig(epochs=2, optimizer=OptimizerConfig("sgd", lr=0.05), schedule=ScheduleConfig("constant", 0),
                      ema_decay=0, progress=False,
                      trainer=TrainerConfig(accelerator="cpu", precision="32-true", logger=(logger,)))
    module = LesionModule(create_model(ModelConfig(backbone="tiny-resnet"), 3), create_loss("ce"), cfg, 3,
                          (0.5,) * 3, (0.25,) * 3)
    run = tmp_path / "run"
    run.mkdir()
    trainer = build_trainer(cfg, run, max_epochs=2, callbacks=[HistoryWriter(run / "history.csv")],
                            log_every_n_steps=1)
    trainer.fit(module, DataLoader(TensorDataset(x[:32], y[:32]), batch_size=8),
                DataLoader(TensorDataset(x[32:], y[32:]), batch_size=8))
    assert len(pd.read_csv(run / "history.csv")) == 2  # written whatever the logger
    return run


def test_csv_logger(tmp_path: Path) -> None:
    metrics = pd.read_csv(_fit(tmp_path, "csv") / "logs" / "csv" / "metrics.csv")
    assert metrics["val_bal_acc"].notna().sum() == 2 and metrics["train_loss"].notna().sum() == 2


def test_tensorboard_logger(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (events,) = (_fit(tmp_path, "tensorboard") / "logs" / "tensorboard").glob("events.out.tfevents.*")
    acc = EventAccumulator(str(events))
    acc.Reload()
    assert len(acc.Scalars("val_bal_acc")) == 2


def test_mlflow_logger_writes_a_local_file_store(tmp_path: Path) -> None:
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    run = _fit(tmp_path, "mlflow")
    client = MlflowClient(tracking_uri=(run / "mlruns").resolve().as_uri())
    (experiment,) = [e for e in client.search_experiments() if e.name == "lesionlab"]
    (logged,) = client.search_runs([experiment.experiment_id])
    assert logged.info.run_name == "run" and logged.info.status == "FINISHED"
    assert len(client.get_metric_history(logged.info.run_id, "val_bal_acc")) == 2


def test_logger_names_are_checked_when_the_config_is_built() -> None:
    assert load_config(None, ["train.trainer.logger=tensorboard,mlflow"]).train.trainer.logger == (
        "tensorboard", "mlflow")
    assert load_config(None, ["train.trainer.logger=none"]).train.trainer.logger == ("none",)
    assert TrainerConfig(logger="csv").logger == ("csv",)
    from lesionlab.training.validation import check_component_names

    with pytest.raises(UnknownNameError, match=r"train\.trainer\.logger: Unknown logger 'wandb'.*csv, mlflow, none"):
        check_component_names(load_config(None, ["train.trainer.logger=wandb"]))
    with pytest.raises(ConfigError, match="cannot be combined"):
        check_component_names(load_config(None, ["train.trainer.logger=[none, csv]"]))
