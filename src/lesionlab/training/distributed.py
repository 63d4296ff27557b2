"""Multi-process (DDP) helpers: which process writes the run, unpadded validation shards, split consistency.

Lightning runs the whole ``train()`` on every rank (its subprocess launcher re-runs the command; ``torchrun`` and
SLURM start every rank themselves). The lesion-disjoint split is a pure function of the table and the seed, so each
rank computes it on its own; :class:`SplitConsistency` checks the ranks agree before the first step. Training
batches are sharded by Lightning's own ``DistributedSampler`` (or ``DistributedSamplerWrapper`` around a balanced
sampler); validation uses :class:`ShardSampler`, which never pads, so the torchmetrics states that Lightning syncs
across ranks count every validation image exactly once. Test evaluation and every artifact belong to rank 0.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Iterator, Sized
from pathlib import Path

import lightning as L
import pandas as pd
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DistributedSampler

logger = logging.getLogger(__name__)

def process_rank() -> int:
    """This process's global rank from the launcher's environment (0 when not distributed).

    Read before the process group exists: ``RANK`` (torchrun), ``SLURM_PROCID`` (srun), else Lightning's
    ``NODE_RANK``/``LOCAL_RANK`` (any non-zero one means "not the global-zero process").
    """
    for key in ("RANK", "SLURM_PROCID"):
        if os.environ.get(key):
            return int(os.environ[key])
    node, local = int(os.environ.get("NODE_RANK", 0) or 0), int(os.environ.get("LOCAL_RANK", 0) or 0)
    return local if node == 0 else max(1, node + local)


def run_dir_for_rank(rank: int) -> Path:
    """A scratch directory for a non-zero rank's discarded outputs (checkpoints go where rank 0 says)."""
    return Path(tempfile.mkdtemp(prefix=f"lesionlab-rank{rank}-"))


def world() -> tuple[int, int]:
    """``(rank, world_size)`` of the initialised process group, ``(0, 1)`` without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class ShardSampler(DistributedSampler):
    """In-order validation sampler: rank r gets items r, r + W, r + 2W, ... with no padding.

    Rank and world size are read when iterated (after Lightning has set up the process group), so the loader can be
    built before the trainer. Single-process it yields ``0..n-1``, exactly like ``shuffle=False``. Being a
    ``DistributedSampler``, Lightning leaves it in place instead of substituting its padding sampler.
    """

    def __init__(self, dataset: Sized) -> None:
        self.dataset = dataset
        self.epoch = 0
        self.shuffle = False
        self.drop_last = False

    def _indices(self) -> range:
        rank, size = world()
        return range(rank, len(self.dataset), size)

    def __iter__(self) -> Iterator[int]:
        return iter(self._indices())

    def __len__(self) -> int:
        return len(self._indices())


def shard_sizes(n: int, world_size: int) -> list[int]:
    """How many of ``n`` items each rank of :class:`ShardSampler` sees (they sum to ``n``)."""
    return [len(range(r, n, world_size)) for r in range(world_size)] if n else [0] * world_size


def split_fingerprint(table: pd.DataFrame) -> str:
    """SHA-256 of (image id, lesion id, split) rows: equal on every rank iff the ranks hold the same split."""
    rows = table[["image_id", "lesion_id", "split"]].astype(str).agg("|".join, axis=1)
    return hashlib.sha256("\n".join(rows).encode()).hexdigest()


class SplitConsistency(L.Callback):
    """Fails the run at setup when the ranks computed different lesion-disjoint splits."""

    def __init__(self, fingerprint: str) -> None:
        self.fingerprint = fingerprint

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        rank, size = world()
        if size == 1:
            return
        prints: list[str | None] = [None] * size
        dist.all_gather_object(prints, self.fingerprint)
        if len(set(prints)) != 1:
            raise RuntimeError(f"ranks computed different data splits: {prints}")
        logger.info("rank %d/%d: split fingerprint %s agrees across ranks", rank, size, self.fingerprint[:12])


class SyncInferenceWeights(L.Callback):
    """Before each validation, copies rank 0's evaluated weights (EMA or model, buffers included) to every rank.

    DDP keeps trainable parameters equal, but BatchNorm running statistics and the EMA are updated locally; without
    this the ranks would score their validation shards with slightly different models than the one checkpointed.
    """

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if world()[1] == 1:
            return
        model = pl_module.inference_model() if hasattr(pl_module, "inference_model") else pl_module
        for tensor in model.state_dict().values():
            dist.broadcast(tensor, src=0)


def ignore_in_ddp(module: nn.Module, prefix: str = "ema") -> None:
    """Tell DDP to skip parameters/buffers under ``prefix`` (the weight EMA: updated in place, never by gradients),
    which would otherwise make DDP wait for gradients that never come."""
    names = [n for n, _ in [*module.named_parameters(), *module.named_buffers()] if n.split(".")[0] == prefix]
    if names:
        torch.nn.parallel.DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(module, names)


__all__ = ["ShardSampler", "SplitConsistency", "SyncInferenceWeights", "ignore_in_ddp", "process_rank",
           "run_dir_for_rank", "shard_sizes", "split_fingerprint", "world"]
