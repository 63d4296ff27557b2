"""What a study file (``configs/studies/NAME.yaml``, shipped in the package) says: the question, the paper's claims
and the arms to run."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from lesionlab.config import ConfigError, load_typed_config

#: The experiment configs shipped inside the package (the checkout's ``configs/``), so studies run from a pip install.
PACKAGE_CONFIGS = Path(__file__).resolve().parents[1] / "configs"
#: Where ``lesionlab study NAME`` looks for ``NAME.yaml``.
STUDY_DIR = PACKAGE_CONFIGS / "studies"


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
    known = study_names()
    close = difflib.get_close_matches(str(name_or_file), known, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise ConfigError(f"no study {str(name_or_file)!r} ({hint}known: {', '.join(known) or 'none'}; or pass a study "
                      "YAML file)")


def study_names() -> list[str]:
    """The studies shipped with the package."""
    return sorted(p.stem for p in STUDY_DIR.glob("*.yaml"))


def arm_config_path(config: str) -> str:
    """An arm's experiment file: as written, relative to the working directory, when it exists there (a checkout, or
    the user's own copy), else the copy shipped in the package (``configs/X.yaml`` → ``lesionlab/configs/X.yaml``)."""
    path = Path(config)
    if path.is_file() or path.is_absolute():
        return config
    shipped = PACKAGE_CONFIGS.parent / path
    return str(shipped) if shipped.is_file() else config


def load_study(name_or_file: str | Path) -> StudyConfig:
    study = load_typed_config(StudyConfig, study_path(name_or_file))
    arms = tuple(replace(a, config=arm_config_path(a.config)) if a.config else a for a in study.arms)
    return replace(study, arms=arms)
