"""``lesionlab train --resume``: a run SIGKILLed after epoch k and resumed ends exactly like an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from lesionlab.cli import main
from lesionlab.config import load_config, save_config
from tests.conftest import TINY

EPOCHS, KILL_AFTER = 4, 2
SRC = Path(__file__).resolve().parents[2] / "src"

# Runs the CLI in a child process; once last.ckpt of epoch KILL_AFTER is on disk it writes a marker and waits, so the
# test can SIGKILL it at a known point (the kill itself is a real, unannounced SIGKILL).
CHILD = """
import sys, time
from pathlib import Path
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
torch.set_num_threads(1)
marker, kill_after, argv = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
original = ModelCheckpoint._save_checkpoint
def save_then_wait(self, trainer, filepath):
    original(self, trainer, filepath)
    if filepath.endswith("last.ckpt") and trainer.current_epoch + 1 == kill_after:
        marker.write_text(filepath)
        time.sleep(600)
ModelCheckpoint._save_checkpoint = save_then_wait
from lesionlab.cli import main
sys.exit(main(argv))
"""


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)  # the child process uses one thread too: identical float reductions
    yield
    torch.set_num_threads(old)


def _args(folder: Path, out: Path, cache: Path) -> list[str]:
    return ["-q", "train", "--output-dir", str(out), "name=resume", *TINY, "data.dataset=folder",
            f"data.image_dir={folder}", f"data.cache_dir={cache}", f"train.epochs={EPOCHS}", "train.batch_size=8",
            "train.trainer.precision=32-true", "train.trainer.accelerator=cpu", "train.optimizer.lr=0.01",
            "eval.ood=none"]


def _only_run(out: Path) -> Path:
    (run,) = [p for p in out.iterdir() if p.is_dir()]
    return run


def _kill_after_checkpoint(argv: list[str], marker: Path, timeout: float = 600) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(marker), str(KILL_AFTER), *argv], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    try:
        while not marker.exists():
            if proc.poll() is not None:
                pytest.fail(f"the run ended before it could be killed: {proc.stderr.read().decode()[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"no checkpoint of epoch {KILL_AFTER} within {timeout:.0f} s")
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()


@pytest.mark.slow
def test_killed_run_resumes_to_the_uninterrupted_result(image_folder: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    assert main(_args(image_folder, tmp_path / "full", cache)) == 0
    full = _only_run(tmp_path / "full")

    _kill_after_checkpoint(_args(image_folder, tmp_path / "killed", cache), tmp_path / "marker")
    killed = _only_run(tmp_path / "killed")
    assert not (killed / "metrics.json").exists()
    ckpt = torch.load(killed / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["epoch"] == KILL_AFTER - 1  # Lightning counts from 0: epochs 1..k are in it
    assert any(k.startswith("ema.") for k in ckpt["state_dict"]) and ckpt["optimizer_states"]
    assert ckpt["lr_schedulers"] and "lesionlab_resume" in ckpt

    assert main(["-q", "train", "--resume", str(killed), "train.progress=false"]) == 0
    assert _only_run(tmp_path / "killed") == killed  # the same run directory, no new one

    cols = ["epoch", "train_loss", "train_bal_acc", "val_loss", "val_bal_acc", "val_auc", "lr"]
    h_full, h_resumed = pd.read_csv(full / "history.csv"), pd.read_csv(killed / "history.csv")
    assert list(h_resumed["epoch"]) == list(range(1, EPOCHS + 1))  # no duplicated rows after the checkpoint
    np.testing.assert_allclose(h_resumed[cols].to_numpy(), h_full[cols].to_numpy(), rtol=0, atol=1e-6)
    m_full = json.loads((full / "metrics.json").read_text())
    m_resumed = json.loads((killed / "metrics.json").read_text())
    assert m_resumed.keys() == m_full.keys()
    for key in ("accuracy", "balanced_accuracy", "auc_macro"):
        assert m_resumed[key] == pytest.approx(m_full[key], abs=1e-6), key
    assert json.dumps(m_resumed, sort_keys=True) == json.dumps(m_full, sort_keys=True)
    assert (killed / "report.html").is_file()
    assert not (killed / "checkpoints" / "last.ckpt").exists()  # a finished run drops its resume state
    assert (killed / "checkpoints" / "best.ckpt").is_file()
    assert (killed / "logs" / "csv" / "metrics.csv").is_file()  # the default CSV logger kept writing


def _fake_run(tmp_path: Path, *overrides: str) -> Path:
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    save_config(load_config(None, ["model.backbone=tiny-resnet", *overrides]), run / "config.yaml")
    return run


@pytest.mark.parametrize(("setup", "message"), [
    (lambda run: None, "last.ckpt is missing"),
    (lambda run: (run / "checkpoints" / "last.ckpt").write_bytes(b"not a checkpoint"), "unreadable"),
    (lambda run: torch.save({"state_dict": {}}, run / "checkpoints" / "last.ckpt"), "not a full resume checkpoint"),
    (lambda run: (run / "metrics.json").write_text("{}"), "has finished"),
])
def test_unresumable_runs_fail_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], setup,
                                             message: str) -> None:
    run = _fake_run(tmp_path)
    setup(run)
    assert main(["train", "--resume", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_resume_refuses_staged_runs_and_changed_settings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = _fake_run(tmp_path, "train.stages=[{epochs: 1, lr: 0.1, unfreeze: head}]")
    assert main(["train", "--resume", str(run)]) == 2
    assert "staged fine-tuning" in capsys.readouterr().err
    assert main(["train", "--resume", str(run), "train.optimizer.lr=0.5"]) == 2
    assert "allowed overrides" in capsys.readouterr().err
    assert main(["train", "--resume", str(tmp_path / "nowhere")]) == 2
    assert "no such run directory" in capsys.readouterr().err


def _plateau_fit(root: Path, ckpt_path: Path | None = None, keep_after: int | None = None) -> tuple[list, dict]:
    """A 4-epoch fit on shuffled tensors with ReduceLROnPlateau (patience 0) and dropout; ``keep_after`` copies
    ``last.ckpt`` of that epoch aside, ``ckpt_path`` resumes from such a copy."""
    import shutil

    import lightning as L

    from lesionlab.config import ModelConfig, OptimizerConfig, ScheduleConfig, TrainConfig, TrainerConfig
    from lesionlab.models.classifier import create_model
    from lesionlab.training.callbacks import HistoryWriter
    from lesionlab.training.losses import create_loss
    from lesionlab.training.module import LesionModule
    from lesionlab.training.resume import ResumeState
    from lesionlab.training.trainer_factory import best_checkpoint, build_trainer, last_checkpoint

    class KeepCheckpoint(L.Callback):
        def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
            if trainer.current_epoch == keep_after:
                shutil.copy(root / "checkpoints" / "last.ckpt", root / "kept.ckpt")

    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (48, 3, 16, 16), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 3, (48,), generator=g)
    cfg = TrainConfig(epochs=4, optimizer=OptimizerConfig("sgd", lr=0.05),
                      schedule=ScheduleConfig("plateau", plateau_patience=0, warmup_epochs=0), ema_decay=0.9,
                      trainer=TrainerConfig(accelerator="cpu", precision="32-true", logger=("none",)), progress=False)
    module = LesionModule(create_model(ModelConfig(backbone="tiny-resnet", drop_rate=0.3), 3), create_loss("ce"),
                          cfg, 3, (0.5,) * 3, (0.25,) * 3)
    history = HistoryWriter(root / "history.csv")
    callbacks = [history, best_checkpoint(cfg, root / "checkpoints"), last_checkpoint(root / "checkpoints"),
                 ResumeState(), KeepCheckpoint()]
    build_trainer(cfg, root, max_epochs=4, callbacks=callbacks).fit(
        module, torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x[:32], y[:32]), batch_size=8,
                                            shuffle=True),
        torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x[32:], y[32:]), batch_size=8),
        ckpt_path=ckpt_path)
    return history.rows, module.state_dict()


def test_in_process_resume_replays_the_plateau_step_and_the_shuffling(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    rows, state = _plateau_fit(tmp_path / "a", keep_after=2)
    lrs = [r["lr"] for r in rows]
    assert lrs[2] < lrs[1]  # the plateau schedule cut the rate after epoch 2, i.e. after the kept checkpoint
    resumed_rows, resumed_state = _plateau_fit(tmp_path / "b", ckpt_path=tmp_path / "a" / "kept.ckpt")
    cols = ["epoch", "train_loss", "train_bal_acc", "val_loss", "val_bal_acc", "lr"]
    assert [[r[c] for c in cols] for r in resumed_rows] == [[r[c] for c in cols] for r in rows]
    assert all(torch.equal(state[k], resumed_state[k]) for k in state)  # weights and the EMA copy


@pytest.mark.slow
def test_resuming_a_refit_jobs_killed_train_only_run_goes_on_to_the_refit(image_folder: Path, tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "killed"
    _kill_after_checkpoint([*_args(image_folder, out, tmp_path / "cache"), "train.refit=true"], tmp_path / "marker")
    sibling = _only_run(out)  # killed during the first of the two fits
    assert main(["-q", "train", "--resume", str(sibling), "train.progress=false"]) == 0
    assert (sibling / "val_metrics.json").is_file() and not (sibling / "metrics.json").exists()  # test untouched
    (refit,) = [p for p in out.iterdir() if p.name.startswith("resume-refit-")]
    assert (refit / "metrics.json").is_file()  # the job's second fit ran and was evaluated
    blob = torch.load(refit / "model.pt", map_location="cpu", weights_only=False)
    assert blob["extra"]["calibrated_by"] == str(sibling.resolve())
    assert "train-only run (calibrates the refit)" in capsys.readouterr().out
