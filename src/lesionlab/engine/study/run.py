"""``lesionlab study NAME``: run a literature study's arms over seeds, resumably, and write its results page.

Each arm is one engine command (train, cv, leakage-audit, pretrain, compare-pretraining) on a config with overrides,
run once per seed. Every finished arm × seed appends its rows to ``<results>/<study>[-gpu].csv`` at once, so a killed
study resumes where it stopped; the Markdown page (:mod:`lesionlab.reports.study_page`) is rewritten after each.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from lesionlab.config import ConfigError, load_config, load_typed_config
from lesionlab.config.study import ArmConfig, StudyConfig
from lesionlab.registry import Registry

logger = logging.getLogger(__name__)

#: Columns of the results table besides the metrics and their ``_lo`` / ``_hi`` bounds.
ID_COLUMNS = ("arm", "seed", "label", "scale", "minutes", "run_dir", "machine")
#: Dynamics read from a run's history: the overfitting gap at the end and the best validation figure.
HISTORY_COLUMNS = ("final_train_bal_acc", "final_val_bal_acc", "gap_bal_acc", "best_val_bal_acc", "best_epoch")


@dataclass(frozen=True)
class ArmKind:
    """How to run one kind of arm: its config's key prefix for experiment settings, and the runner."""

    prefix: str  # "" for ExperimentConfig-shaped configs, "experiment." for compare-pretraining
    run: Callable[[ArmConfig, list[str]], dict[str, Path]]  # → label → run directory (metrics.json inside)


STUDY_KINDS: Registry[ArmKind] = Registry("study arm kind")


def _experiment(arm: ArmConfig, overrides: list[str]):
    from lesionlab.training.validation import check_component_names

    cfg = load_config(arm.config, overrides)
    check_component_names(cfg)
    return cfg


def _run_train(arm: ArmConfig, overrides: list[str]) -> dict[str, Path]:
    from lesionlab.engine.train import train

    return {arm.name: train(_experiment(arm, overrides)).run.root}


def _run_cv(arm: ArmConfig, overrides: list[str]) -> dict[str, Path]:
    from lesionlab.engine.cv import run_cv

    result = run_cv(_experiment(arm, overrides), int(arm.options.get("folds", 5)),
                    weighting=str(arm.options.get("weighting", "equal")))
    out = {}
    for label, row in result.summary.iterrows():  # single fold mean/std, ensemble, ensemble + TTA
        if str(label).endswith(": std"):
            continue
        target = result.directory / "study_rows" / re.sub(r"[^A-Za-z0-9]+", "-", str(label)).strip("-")
        target.mkdir(parents=True, exist_ok=True)
        metrics = {k: float(v) for k, v in row.items() if pd.notna(v)}
        lo, hi = metrics.pop("balanced_accuracy_ci_low", None), metrics.pop("balanced_accuracy_ci_high", None)
        if lo is not None and hi is not None:
            metrics["ci95"] = {"balanced_accuracy": [lo, hi]}
        (target / "metrics.json").write_text(json.dumps(metrics, indent=2))
        out[f"{arm.name}: {str(label).removesuffix(': mean')}"] = target
    return out


def _run_leakage(arm: ArmConfig, overrides: list[str]) -> dict[str, Path]:
    from lesionlab.engine.leakage_audit import leakage_audit

    result = leakage_audit(_experiment(arm, overrides), train_models=True)
    return {f"{arm.name}: {label}": result.directory / label for label in ("lesion-disjoint", "image-level")}


def _run_pretrain(arm: ArmConfig, overrides: list[str]) -> dict[str, Path]:
    from lesionlab.config.pretraining import PretrainConfig
    from lesionlab.engine.pretrain import pretrain_vae

    return {arm.name: pretrain_vae(load_typed_config(PretrainConfig, arm.config, overrides)).run.root}


def _run_compare_pretraining(arm: ArmConfig, overrides: list[str]) -> dict[str, Path]:
    from lesionlab.config.pretraining import ComparePretrainingConfig
    from lesionlab.engine.compare_pretraining import compare_pretraining

    result = compare_pretraining(load_typed_config(ComparePretrainingConfig, arm.config, overrides))
    return {f"{arm.name}: {name}": r.run.root for name, r in result.runs.items()}


def _run_build_dermamnist(arm: ArmConfig, overrides: list[str]) -> dict[str, Path]:
    from lesionlab.data.dermamnist_build import build_dermamnist

    root = next((o.split("=", 1)[1] for o in overrides if o.startswith("data.root=")), None)
    out_dir = Path(next(o.split("=", 1)[1] for o in overrides if o.startswith("output_dir="))) / arm.name
    written = build_dermamnist(root, sizes=tuple(int(s) for s in arm.options.get("sizes", (28, 64, 128))),
                               out_dir=out_dir, progress=False)
    return {arm.name: written[0].parent}  # later arms read <this>/dermamnist_corrected_<size>.npz


def _run_latency(arm: ArmConfig, overrides: list[str]) -> dict[str, Path]:
    """Batch-1 CPU latency of each ``options.backbones`` at ``options.image_size`` (random weights: speed only)."""
    from lesionlab.config import ModelConfig
    from lesionlab.models.classifier import create_model
    from lesionlab.reports.distill_report import cpu_latency_ms

    out_dir = Path(next(o.split("=", 1)[1] for o in overrides if o.startswith("output_dir="))) / arm.name
    size, runs = int(arm.options.get("image_size", 224)), int(arm.options.get("runs", 30))
    outputs = {}
    for backbone in arm.options.get("backbones", ()):
        model = create_model(ModelConfig(backbone=str(backbone), pretrained=False), 7).eval()
        target = out_dir / str(backbone)
        target.mkdir(parents=True, exist_ok=True)
        metrics = {"latency_ms": cpu_latency_ms(model, size, runs=runs),
                   "params_m": sum(p.numel() for p in model.parameters()) / 1e6, "image_size": size}
        (target / "metrics.json").write_text(json.dumps(metrics, indent=2))
        outputs[f"{arm.name}: {backbone}"] = target
    return outputs


STUDY_KINDS.add("train", ArmKind("", _run_train), help="one training run per seed (test metrics with CIs)")
STUDY_KINDS.add("cv", ArmKind("", _run_cv), help="k-fold CV: single-fold mean, ensemble, ensemble + TTA")
STUDY_KINDS.add("leakage-audit", ArmKind("", _run_leakage), help="the same recipe on lesion-disjoint vs image-level")
STUDY_KINDS.add("pretrain", ArmKind("", _run_pretrain), help="a VAE pretraining run (no metrics; later arms use it)")
STUDY_KINDS.add("latency", ArmKind("", _run_latency),
                help="batch-1 CPU latency of options.backbones at options.image_size (one thread)")
STUDY_KINDS.add("build-dermamnist", ArmKind("", _run_build_dermamnist),
                help="DermaMNIST-Corrected arrays from HAM10000 (options.sizes; no metrics)")
STUDY_KINDS.add("compare-pretraining", ArmKind("experiment.", _run_compare_pretraining),
                help="frozen-encoder classifiers on VAE / ImageNet / random encoders")


def machine() -> str:
    """``2-core AMD EPYC ...``: the machine every absolute time in a results table is stated with."""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor() or platform.machine()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    import torch

    gpu = f" + {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    return f"{cores}-core {cpu}{gpu}"


def metric_value(metrics: dict[str, Any], name: str) -> float | None:
    """``balanced_accuracy`` or a dotted path such as ``per_class.P1.recall``."""
    node: Any = metrics
    for part in name.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return float(node) if isinstance(node, int | float) else None


def run_row(run_dir: Path, metrics: Sequence[str]) -> dict[str, Any]:
    """The study row of a finished run: its metrics with 95 % CIs (where stored), training dynamics and minutes."""
    stored = json.loads((run_dir / "metrics.json").read_text()) if (run_dir / "metrics.json").is_file() else {}
    row: dict[str, Any] = {}
    ci = stored.get("ci95") or {}
    for name in metrics:
        row[name] = metric_value(stored, name)
        bounds = ci.get(name)
        if isinstance(bounds, list | tuple) and len(bounds) == 2:
            row[f"{name}_lo"], row[f"{name}_hi"] = float(bounds[0]), float(bounds[1])
    history = run_dir / "history.csv"
    if history.is_file():
        h = pd.read_csv(history)
        if len(h) and {"train_bal_acc", "val_bal_acc"} <= set(h.columns) and h["val_bal_acc"].notna().any():
            last = h.iloc[-1]
            row.update(final_train_bal_acc=float(last["train_bal_acc"]), final_val_bal_acc=float(last["val_bal_acc"]),
                       gap_bal_acc=float(last["train_bal_acc"] - last["val_bal_acc"]),
                       best_val_bal_acc=float(h["val_bal_acc"].max()),
                       best_epoch=int(h.loc[h["val_bal_acc"].idxmax(), "epoch"]))
    timings = run_dir / "timings.json"
    if timings.is_file():
        row["minutes"] = json.loads(timings.read_text()).get("total", float("nan")) / 60
    return row


def results_path(study: StudyConfig, results_dir: str | Path, scale: str) -> Path:
    return Path(results_dir) / (f"{study.name}.csv" if scale == "cpu" else f"{study.name}-{scale}.csv")


def _substitute(text: str, done: pd.DataFrame, seed: int) -> str:
    def lookup(match: re.Match) -> str:
        runs = done[done["arm"] == match.group(1)]
        same = runs[runs["seed"] == seed]
        if same.empty and runs["seed"].nunique() != 1:  # an arm run once (e.g. one pretraining) serves every seed
            raise ConfigError(f"{{arm:{match.group(1)}}}: that arm has not run for seed {seed}; list it earlier")
        return str((same if len(same) else runs)["run_dir"].iloc[0])

    return re.sub(r"\{arm:([^}]+)\}", lookup, text)


def arm_overrides(study: StudyConfig, arm: ArmConfig, scale: str, seed: int, done: pd.DataFrame,
                  data_root: str | None, output_dir: Path) -> list[str]:
    """Data root ← the study's scale overrides (with the kind's prefix) ← the arm's ← seed, name and output folder."""
    kind = STUDY_KINDS.get(arm.kind)
    if scale not in study.scales and study.scales:
        raise ConfigError(f"study {study.name!r} has no scale {scale!r}; it has {', '.join(study.scales)}")
    p = kind.prefix
    root = str(Path(data_root).expanduser().resolve()) if data_root else None
    out = [f"{p}data.root={root}"] if root else []
    own = [*study.scales.get(scale, []), *arm.overrides, *arm.at_scale.get(scale, [])]
    for i, o in enumerate(own):
        if "{data_root}" in o:
            if root is None:
                raise ConfigError(f"study {study.name!r}, arm {arm.name!r}: {o!r} needs --data-root")
            o = o.replace("{data_root}", root)
        out.append(f"{p}{o}" if i < len(study.scales.get(scale, [])) else _substitute(o, done, seed))
    out += [(arm.seed_key and f"{arm.seed_key}={seed}") or f"{p}train.seed={seed}",
            f"name={arm.name}-s{seed}", f"output_dir={output_dir}"]
    return out


def run_study(study: StudyConfig, *, scale: str = "cpu", data_root: str | None = None,
              results_dir: str | Path = "runs/studies/results", runs_dir: str | Path = "runs/studies",
              only: Sequence[str] = (), on_progress: Callable[[pd.DataFrame], None] | None = None) -> pd.DataFrame:
    """Run every missing arm × seed of ``study`` in order; return the results table (also written as CSV)."""
    for arm in study.arms:
        STUDY_KINDS.get(arm.kind)  # an unknown kind fails before anything runs
        if arm.config is not None and not Path(arm.config).is_file():
            raise FileNotFoundError(f"study {study.name!r}, arm {arm.name!r}: config not found: {arm.config}")
    unknown = set(only) - {a.name for a in study.arms}
    if unknown:
        arms = ", ".join(a.name for a in study.arms)
        raise ConfigError(f"--only {sorted(unknown)}: not arms of {study.name!r} ({arms})")
    csv = results_path(study, results_dir, scale)
    done = pd.read_csv(csv) if csv.is_file() else pd.DataFrame(columns=list(ID_COLUMNS))
    for arm in study.arms:
        if only and arm.name not in only:
            continue
        if arm.only_at and scale not in arm.only_at:
            continue
        for seed in arm.seeds or study.seeds:
            if ((done["arm"] == arm.name) & (done["seed"] == seed)).any():
                continue
            output_dir = Path(runs_dir) / study.name / scale
            overrides = arm_overrides(study, arm, scale, seed, done, data_root, output_dir)
            logger.info("Study %s, arm %s, seed %d: %s", study.name, arm.name, seed, " ".join(overrides))
            t0 = time.perf_counter()
            outputs = STUDY_KINDS.get(arm.kind).run(arm, overrides)
            minutes = (time.perf_counter() - t0) / 60
            rows = []
            for label, run_dir in outputs.items():
                row = {"minutes": minutes, **run_row(run_dir, study.metrics)}
                row.update(arm=arm.name, seed=seed, label=label, scale=scale, run_dir=str(Path(run_dir).resolve()),
                           machine=machine())
                rows.append(row)
            done = pd.concat([done, pd.DataFrame(rows)], ignore_index=True)
            csv.parent.mkdir(parents=True, exist_ok=True)
            done.to_csv(csv, index=False)  # at once: a killed study resumes after the last finished arm × seed
            if on_progress is not None:
                on_progress(done)
    return done
