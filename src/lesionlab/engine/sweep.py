"""Hyper-parameter grid search: one full run (train → validation → held-out test) per cell of a grid.

Cells are ranked by the *validation* metric the config monitors; test metrics are reported beside it but never
used to choose. Writes ``results.csv``, ``results.md``, ``report.html`` and ``figures/val_curves.png``.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import time
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from lesionlab.config import ConfigError, ExperimentConfig, load_config
from lesionlab.reports.results_table import markdown_table, marked_frame, plot_validation_curves
from lesionlab.runs import RunPaths, discards_unstarted_runs
from lesionlab.training.validation import check_component_names

logger = logging.getLogger(__name__)

SECTIONS = ("train", "model", "data", "eval")  # where short keys are looked up, in this order


@dataclass(frozen=True)
class GridAxis:
    key: str  # dotted config key, e.g. train.optimizer.lr
    values: tuple[str, ...]  # raw override texts, parsed like any key=value override

    @property
    def label(self) -> str:
        return key_label(self.key)


def _fields(cls: type) -> dict[str, object]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _leaves(prefix: str, cls: object) -> list[str]:
    """Dotted keys of the settings under ``cls``, depth first; a group with a ``name`` also answers to its own name."""
    out: list[str] = []
    for name, tp in _fields(cls).items():
        if dataclasses.is_dataclass(tp):
            out += [f"{prefix}{name}"] if "name" in _fields(tp) else []
            out += _leaves(f"{prefix}{name}.", tp)
        else:
            out.append(f"{prefix}{name}")
    return out


def resolve_key(key: str) -> str:
    """``lr`` → ``train.optimizer.lr``, ``optimizer`` → ``train.optimizer.name``; dotted keys are checked against the
    config schema. Unknown keys list valid ones."""
    if "." in key:
        parts = key.split(".")
        cls: object = ExperimentConfig
        for part in parts:
            fields = _fields(cls) if dataclasses.is_dataclass(cls) else {}
            if part not in fields:
                raise ConfigError(f"Unknown grid key {key!r}: {part!r} is not one of {sorted(fields)}")
            cls = fields[part]
        return f"{key}.name" if dataclasses.is_dataclass(cls) and "name" in _fields(cls) else key
    top = _fields(ExperimentConfig)
    if key in top and not dataclasses.is_dataclass(top[key]):
        return key
    for section in SECTIONS:
        for dotted in _leaves(f"{section}.", top[section]):
            if dotted.rsplit(".", 1)[-1] == key != "name":
                return resolve_key(dotted)
    valid = sorted({d.rsplit(".", 1)[-1] for s in SECTIONS for d in _leaves("", top[s])} - {"name"})
    raise ConfigError(f"Unknown grid key {key!r}; short keys resolve against {', '.join(SECTIONS)}: {valid}")


def parse_grid(items: Sequence[str]) -> list[GridAxis]:
    """``["optimizer=adam,sgd", "lr=1e-2,1e-3"]`` → two axes (values split on commas)."""
    axes: list[GridAxis] = []
    for text in items:
        if "=" not in text:
            raise ConfigError(f"--grid {text!r} must look like key=value1,value2 (e.g. lr=1e-2,1e-3)")
        key, raw = text.split("=", 1)
        values = tuple(v.strip() for v in raw.split(",") if v.strip())
        if not values:
            raise ConfigError(f"--grid {text!r} lists no values")
        axes.append(GridAxis(resolve_key(key.strip()), values))
    keys = [a.key for a in axes]
    if len(set(keys)) != len(keys):
        raise ConfigError(f"--grid names a key twice: {keys}")
    return axes


def grid_cells(axes: Sequence[GridAxis]) -> list[dict[str, str]]:
    """Every combination of the axes' values, as ``{dotted key: raw value}``."""
    return [dict(zip([a.key for a in axes], combo, strict=True))
            for combo in itertools.product(*(a.values for a in axes))]


def key_label(key: str) -> str:
    """The short name of a dotted key: its last part, or its group's for a ``.name`` (``train.optimizer.name``:
    optimizer)."""
    parts = key.split(".")
    return parts[-2] if parts[-1] == "name" and len(parts) > 1 else parts[-1]


def cell_name(cell: dict[str, str]) -> str:
    text = "_".join(f"{key_label(k)}={v}" for k, v in cell.items())
    return "".join(ch if ch.isalnum() or ch in "=-_." else "-" for ch in text)


@dataclass(frozen=True)
class SweepResult:
    directory: Path
    table: pd.DataFrame
    best: str  # cell name with the best validation score


def _best_val(history: pd.DataFrame, monitor: str) -> tuple[float, int]:
    h = history.dropna(subset=[monitor])
    if h.empty:
        return float("nan"), 0
    i = h[monitor].idxmin() if monitor == "val_loss" else h[monitor].idxmax()
    return float(h.loc[i, monitor]), int(h.loc[i, "epoch"])


@discards_unstarted_runs
def run_sweep(config: str | Path | None, grid: Sequence[str], overrides: Sequence[str] = (), *,
              output_dir: str | Path | None = None) -> SweepResult:
    """Train every grid cell of ``config`` (+ ``overrides``) and write the comparison into one sweep directory."""
    from lesionlab.engine.train import train

    axes = parse_grid(grid)
    if not axes:
        raise ConfigError("--grid needs at least one key=values axis")
    cells = grid_cells(axes)
    configs: list[tuple[str, dict[str, str], ExperimentConfig]] = []
    for cell in cells:  # build and check every cell first: a typo fails before hours of training
        cfg = load_config(config, [*overrides, *(f"{k}={v}" for k, v in cell.items())])
        check_component_names(cfg)
        configs.append((cell_name(cell), cell, cfg))
    base = configs[0][2]
    root = RunPaths.create(output_dir or base.output_dir, f"sweep-{base.name}").root
    monitor = base.train.monitor
    rows, histories = [], {}
    for i, (name, cell, cfg) in enumerate(configs, start=1):
        logger.info("Sweep cell %d/%d: %s", i, len(configs), name)
        t0 = time.perf_counter()
        result = train(dataclasses.replace(cfg, name=name), run=RunPaths.create(root, name))
        history = pd.read_csv(result.run.history)
        histories[name] = history
        best, epoch = _best_val(history, monitor)
        m = result.metrics
        rows.append({"cell": name, **{key_label(k): v for k, v in cell.items()}, f"best_{monitor}": best,
                     "best_epoch": epoch, "test_balanced_accuracy": m["balanced_accuracy"],
                     "test_accuracy": m["accuracy"], "test_macro_f1": m["macro"]["f1"],
                     "test_auc_macro": m["auc_macro"], "seconds": time.perf_counter() - t0,
                     "run": result.run.root.name})
    table = pd.DataFrame(rows).set_index("cell")
    table.to_csv(root / "results.csv")
    best = str(table[f"best_{monitor}"].idxmin() if monitor == "val_loss" else table[f"best_{monitor}"].idxmax())
    _write_outputs(root, table, histories, monitor, best, axes)
    logger.info("Sweep done: %d cells, best by validation: %s -> %s", len(table), best, root)
    return SweepResult(root, table, best)


def _write_outputs(root: Path, table: pd.DataFrame, histories: dict[str, pd.DataFrame], monitor: str, best: str,
                   axes: Sequence[GridAxis]) -> None:
    from lesionlab.reports.html import Report, image_html, table_html

    score_cols = [f"best_{monitor}", "test_balanced_accuracy", "test_accuracy", "test_macro_f1", "test_auc_macro"]
    lower = [f"best_{monitor}"] if monitor == "val_loss" else []
    shown = marked_frame(table.drop(columns=["run"]).assign(seconds=table["seconds"].round().astype(int)),
                         score_cols, lower)
    grid_text = ", ".join(f"{a.key} ∈ {{{', '.join(a.values)}}}" for a in axes)
    note = (f"Grid: {grid_text}. Cells are ranked by validation {monitor} (best: **{best}**); test metrics are on "
            "the held-out lesion-disjoint test split and were not used to choose. ★ = best value per column.")
    (root / "results.md").write_text(f"# Sweep results\n\n{note}\n\n{markdown_table(shown)}")
    curves = plot_validation_curves(histories, root / "figures" / "val_curves.png", "Validation curves per cell")
    report = Report(title=f"LesionLab sweep: {root.name}", subtitle=grid_text)
    report.add("Results", f"<p>{note.replace('**', '')}</p>" + table_html(shown))
    report.add("Validation curves", image_html(curves, "validation curves per cell"))
    report.write(root / "report.html")
