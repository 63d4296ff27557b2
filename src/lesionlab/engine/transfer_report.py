"""The transfer report: score one model on several sets and write the shift table, the operating-point figure and
the diagnoses outside its classes into one self-contained HTML file."""

from __future__ import annotations

import datetime as _dt
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import pandas as pd
from tqdm.auto import tqdm

from lesionlab.config import DataConfig
from lesionlab.data.datasets import load_dataset
from lesionlab.engine.core.run_data import load_run
from lesionlab.engine.transfer import (
    OWN_TEST,
    OodFlagger,
    SetScores,
    outside_summary,
    score_set,
    shift_table,
    write_predictions,
)
from lesionlab.errors import EvaluationInputError
from lesionlab.reports.artifacts import json_safe
from lesionlab.reports.transfer_page import write_transfer_page

logger = logging.getLogger(__name__)

@dataclass(frozen=True)
class TransferResult:
    directory: Path
    table: pd.DataFrame
    outside: pd.DataFrame
    scores: tuple[SetScores, ...]


def transfer_report(run_dir: str | Path, datasets: Sequence[str], *, data_root: str | None = None,
                    options: Mapping[str, Mapping[str, object]] | None = None, exclude_seen: bool = False,
                    ood: OodFlagger | None = None, n_boot: int = 1000, seed: int = 0,
                    out_dir: str | Path | None = None, progress: bool = False) -> TransferResult:
    """Score ``run_dir`` on each of ``datasets`` (``test`` = its own held-out test split) and write the report."""
    if not datasets:
        raise EvaluationInputError("give at least one dataset (--datasets test ph2 ...)")
    if len(set(datasets)) != len(datasets):
        raise EvaluationInputError(f"--datasets lists a set twice: {list(datasets)}")
    check_sets(datasets, data_root, options)  # a missing set fails before the model loads or any image is read
    run = load_run(run_dir)
    scores = tuple(score_set(run, name, data_root=data_root, options=(options or {}).get(name),
                             exclude_seen=exclude_seen, ood=ood, n_boot=n_boot, seed=seed)
                   for name in tqdm(datasets, desc="Scoring sets", unit="set", disable=not progress))
    directory = Path(out_dir) if out_dir else run.root / "transfer" / f"{_dt.datetime.now():%Y%m%d-%H%M%S}"
    (directory / "figures").mkdir(parents=True, exist_ok=True)
    table = shift_table(scores)
    outside = outside_summary(scores, run.prep.class_names)
    table.to_csv(directory / "shift_table.csv")
    outside.to_csv(directory / "outside_taxonomy.csv", index=False)
    write_predictions(directory, scores)
    (directory / "transfer.json").write_text(json.dumps(json_safe(
        {"run": str(run.root), "thresholds": run.prep.thresholds, "bootstrap": n_boot,
         "sets": [s.summary for s in scores]}), indent=2))
    write_transfer_page(directory, run.root.name, run.prep, scores, table, outside, n_boot)
    logger.info("Transfer report: %s", directory / "report.html")
    return TransferResult(directory, table, outside, scores)


def check_sets(datasets: Sequence[str], data_root: str | None = None,
               options: Mapping[str, Mapping[str, object]] | None = None) -> None:
    """Every named set (``test`` aside) is a known dataset whose table and images are found: checked for all of them
    before any is loaded, so the last set's typo does not wait for the others' predictions."""
    for name in datasets:
        if name != OWN_TEST:
            load_dataset(DataConfig(dataset=name, root=data_root, options=dict((options or {}).get(name) or {})))
