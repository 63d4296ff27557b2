"""What a study file (``configs/studies/NAME.yaml``) says: the question, the paper's claims and the arms to run."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lesionlab.config import ConfigError, load_typed_config

#: Where ``lesionlab study NAME`` looks for ``NAME.yaml``.
STUDY_DIR = Path("configs/studies")


@dataclass
class ArmConfig:
    """One step of a study: a training-like command run on a config with overrides, once per seed."""

    name: str
    kind: str = "train"  # train | cv | leakage-audit | pretrain | compare-pretraining | build-dermamnist | latency
    config: str | None = None  # the experiment YAML (relative to the working directory)
    overrides: tuple[str, ...] = ()  # key=value; "{arm:NAME}": arm NAME's run directory (same seed, or its only)
    options: dict[str, Any] = field(default_factory=dict)  # kind-specific: cv {folds, weighting}
    seeds: tuple[int, ...] | None = None  # default: the study's seeds
    seed_key: str | None = None  # the override that sets the seed; default: the kind's own (train.seed, ...)
    only_at: tuple[str, ...] = ()  # run only at these scales (e.g. [gpu] for a paper-resolution arm); () = all
    at_scale: dict[str, list[str]] = field(default_factory=dict)  # scale → overrides applied after the arm's own

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name:
            raise ConfigError(f"study arm names must be non-empty and contain no '/': {self.name!r}")


@dataclass
class StudyConfig:
    """A literature study, re-run honestly: the paper's claims beside our arms' results on lesion-disjoint data."""

    name: str
    title: str
    question: str
    paper: str  # the citation
    arms: tuple[ArmConfig, ...]
    claims: dict[str, dict[str, float]] = field(default_factory=dict)  # row label → metric → the paper's value
    seeds: tuple[int, ...] = (0, 1, 2)
    metrics: tuple[str, ...] = ("balanced_accuracy", "auc_macro", "accuracy")
    scales: dict[str, list[str]] = field(default_factory=dict)  # cpu / gpu → overrides applied to every arm
    setting: dict[str, str] = field(default_factory=dict)  # scale → data, size, epochs in words (for the table)
    # {label, metric[, paper, claim_row]}: our row that answers the question, the paper's row it is compared with
    headline: dict[str, str] = field(default_factory=dict)
    verdict: str = ""  # one hand-written line once the numbers are in (agrees / does not, and why)

    def __post_init__(self) -> None:
        names = [a.name for a in self.arms]
        if not names:
            raise ConfigError(f"study {self.name!r} has no arms")
        if len(set(names)) != len(names):
            raise ConfigError(f"study {self.name!r}: arm names repeat: {names}")
        if not self.seeds:
            raise ConfigError(f"study {self.name!r}: seeds must not be empty")


def study_path(name_or_file: str | Path) -> Path:
    """A study file, or the name of one under ``configs/studies/``; the error lists the studies there."""
    path = Path(name_or_file)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise FileNotFoundError(f"study file not found: {path}")
        return path
    candidate = STUDY_DIR / f"{name_or_file}.yaml"
    if candidate.is_file():
        return candidate
    known = sorted(p.stem for p in STUDY_DIR.glob("*.yaml")) if STUDY_DIR.is_dir() else []
    raise ConfigError(f"no study {str(name_or_file)!r} in {STUDY_DIR}/ (known: {', '.join(known) or 'none'}; run from "
                      "the checkout or pass a study YAML file)")


def load_study(name_or_file: str | Path) -> StudyConfig:
    return load_typed_config(StudyConfig, study_path(name_or_file))
