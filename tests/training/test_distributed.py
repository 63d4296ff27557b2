"""DDP on CPU (gloo): 2 processes train on real images; their gathered metrics equal single-process ones."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torchmetrics

from lesionlab.config import load_config
from lesionlab.data.prepare import prepare_data
from lesionlab.evaluation.metrics import classification_metrics
from lesionlab.inference.predict import predict_probs
from lesionlab.models.classifier import create_model
from lesionlab.training.distributed import ShardSampler, shard_sizes, split_fingerprint
from tests.conftest import TINY


@pytest.mark.parametrize("n, world", [(0, 2), (1, 2), (7, 2), (10, 3), (5, 8)])
def test_shards_cover_every_item_once(n: int, world: int, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []
    for rank in range(world):
        monkeypatch.setattr("lesionlab.training.distributed.world", lambda r=rank: (r, world))
        shard = list(ShardSampler(range(n)))
        assert len(shard) == len(ShardSampler(range(n))) == shard_sizes(n, world)[rank]
        seen += shard
    assert sorted(seen) == list(range(n))  # no padding duplicates, nothing dropped


def test_single_process_shard_is_in_order() -> None:
    assert list(ShardSampler(range(5))) == [0, 1, 2, 3, 4]


@pytest.mark.slow
def test_two_process_ddp_metrics_equal_single_process(shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "runs"  # the session's image cache (and subsample memo), shared with the other real-data runs
    overrides = [*TINY, f"data.root={shared_data}", "data.max_samples=400", "eval.calibrate=false"]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    env.pop("LOCAL_RANK", None)
    proc = subprocess.run(
        [sys.executable, "-m", "lesionlab", "-q", "train", "--output-dir", str(out), "--devices", "2",
         "--strategy", "ddp", "--precision", "32-true", "name=ddp", "train.trainer.accelerator=cpu",
         "train.progress=false",
         "train.augmentation.mode=batch", *overrides],  # batched augmentation: each rank draws from its own generator
        capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    (run,) = list(out.iterdir())  # only rank 0 writes a run directory

    cfg = load_config(None, overrides)
    data = prepare_data(cfg.data)  # the same split as both ranks (deterministic by seed)
    splits = pd.read_csv(run / "splits.csv", dtype={"image_id": str, "lesion_id": str})
    assert split_fingerprint(splits) == split_fingerprint(data.table)

    # Validation: the balanced accuracy / AUC Lightning gathered from both ranks' shards == one process scoring the
    # whole validation split with the checkpointed (rank-0) weights.
    ckpt = torch.load(run / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=False)
    n_train = len(data.indices("train"))
    assert ckpt["global_step"] == -(-n_train // 2) // 16  # each of the 2 ranks stepped through half the images
    state = ckpt["state_dict"]
    model = create_model(cfg.model, 7)
    model.load_state_dict({k.removeprefix("ema.module."): v for k, v in state.items() if k.startswith("ema.module.")})
    val = data.indices("val")
    mean, std = _normalisation(run)
    probs = predict_probs(model.eval(), data.images, mean, std, indices=data.rows[val], batch_size=64, tta="none")
    targets = torch.as_tensor(data.targets()[val])
    recall = torchmetrics.classification.MulticlassRecall(7, average="macro")(torch.as_tensor(probs), targets)
    auc = torchmetrics.classification.MulticlassAUROC(7, average="macro")(torch.as_tensor(probs), targets)
    history = pd.read_csv(run / "history.csv")
    assert len(history) == 1
    assert history["val_bal_acc"].iloc[0] == pytest.approx(float(recall), abs=1e-6)
    assert history["val_auc"].iloc[0] == pytest.approx(float(auc), abs=1e-4)

    # Test: evaluated once, on rank 0, on every test image exactly once, never on a training/validation lesion.
    preds = pd.read_csv(run / "predictions.csv", dtype={"image_id": str})
    test_ids = splits.loc[splits["split"] == "test", "image_id"]
    assert sorted(preds["image_id"]) == sorted(test_ids)
    seen = set(splits.loc[splits["split"] != "test", "lesion_id"])
    assert not seen & set(splits.loc[splits["split"] == "test", "lesion_id"])
    metrics = json.loads((run / "metrics.json").read_text())
    classes = [c.removeprefix("p_") for c in preds.columns if c.startswith("p_")]
    ref = classification_metrics(preds["truth"].map(classes.index).to_numpy(),
                                 preds[[f"p_{c}" for c in classes]].to_numpy(np.float64), classes)
    assert metrics["balanced_accuracy"] == pytest.approx(ref["balanced_accuracy"], abs=1e-9)


def _normalisation(run: Path) -> tuple[tuple[float, ...], tuple[float, ...]]:
    prep = torch.load(run / "model.pt", map_location="cpu", weights_only=False)
    p = prep["preprocessing"]
    return tuple(p["mean"]), tuple(p["std"])
