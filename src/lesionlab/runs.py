"""The run directory: everything needed to reproduce, inspect and compare a run lives under one folder."""

from __future__ import annotations

import datetime as _dt
import functools
import json
import shutil
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")

#: Run directories created by the innermost :func:`discards_unstarted_runs` call (None outside any).
_CREATED: ContextVar[list[Path] | None] = ContextVar("lesionlab_created_runs", default=None)


@dataclass(frozen=True)
class RunPaths:
    root: Path

    @classmethod
    def create(cls, output_dir: str | Path, name: str) -> RunPaths:
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        root = Path(output_dir) / f"{name}-{stamp}"
        suffix = 1
        while root.exists():
            suffix += 1
            root = Path(output_dir) / f"{name}-{stamp}-{suffix}"
        root.mkdir(parents=True)
        (root / "figures").mkdir()
        created = _CREATED.get()
        if created is not None:
            created.append(root)
        return cls(root)

    @classmethod
    def existing(cls, root: str | Path) -> RunPaths:
        root = Path(root)
        if not (root / "model.pt").is_file():
            raise FileNotFoundError(f"{root} is not a LesionLab run directory (no model.pt)")
        return cls(root)

    config = property(lambda self: self.root / "config.yaml")
    splits = property(lambda self: self.root / "splits.csv")
    skipped = property(lambda self: self.root / "skipped_images.csv")
    data_summary = property(lambda self: self.root / "data_summary.json")
    model = property(lambda self: self.root / "model.pt")
    checkpoints = property(lambda self: self.root / "checkpoints")
    history = property(lambda self: self.root / "history.csv")
    metrics = property(lambda self: self.root / "metrics.json")
    predictions = property(lambda self: self.root / "predictions.csv")
    figures = property(lambda self: self.root / "figures")
    report = property(lambda self: self.root / "report.html")


@dataclass(frozen=True)
class TrainResult:
    """What a training run returns: its directory, its metrics (test, or validation with eval.test=false), timings."""

    run: RunPaths
    metrics: dict
    seconds: dict[str, float]

    @classmethod
    def from_directory(cls, root: str | Path) -> TrainResult:
        """A finished run read back from disk: its test metrics (``metrics.json``) or validation figures
        (``val_metrics.json``) and its ``timings.json``."""
        run = RunPaths.existing(root)
        found = [f for f in (run.metrics, run.root / "val_metrics.json") if f.is_file()]
        timings = run.root / "timings.json"
        if not found or not timings.is_file():
            raise FileNotFoundError(f"{run.root} has not finished: no metrics.json / val_metrics.json or timings.json")
        return cls(run, json.loads(found[0].read_text()), json.loads(timings.read_text()))


def discards_unstarted_runs(fn: Callable[P, R]) -> Callable[P, R]:
    """Decorate an engine entry point: when it fails before any epoch finished (data not found, a bad name, ...),
    the run directories it created are removed again, so a failed start leaves nothing half-made behind. A run
    that trained at least one epoch (a ``history.csv`` below it) is kept for inspection or ``--resume``."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        token = _CREATED.set([])
        try:
            return fn(*args, **kwargs)
        except BaseException:
            for root in reversed(_CREATED.get() or []):
                if root.is_dir() and not any(root.rglob("history.csv")):
                    shutil.rmtree(root, ignore_errors=True)
            raise
        finally:
            _CREATED.reset(token)

    return wrapper
