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
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from lesionlab.config import DataConfig
from lesionlab.data.datasets import load_dataset
from lesionlab.engine.run_data import load_run
from lesionlab.engine.transfer import (
    OWN_TEST,
    OodFlagger,
    SetScores,
    ood_column_note,
    outside_summary,
    score_set,
    shift_table,
    write_predictions,
)
from lesionlab.errors import EvaluationInputError
from lesionlab.reports.html import Report, image_html, table_html

logger = logging.getLogger(__name__)

SHIFT_COLUMNS = ("images", "scored", "outside taxonomy", "seen, excluded", "balanced accuracy", "macro AUC", "ECE",
                 "OOD-flag rate")
OPERATING_COLUMNS = ("melanomas", "melanoma AUC [95% CI]", "P1 sensitivity [95% CI]", "P1 specificity [95% CI]")


@dataclass(frozen=True)
class TransferResult:
    directory: Path
    table: pd.DataFrame
    outside: pd.DataFrame
    scores: tuple[SetScores, ...]


def plot_operating_points(scores: Sequence[SetScores], path: Path) -> Path:
    """Melanoma AUC and priority-1 sensitivity / specificity per set, with their 95 % lesion-bootstrap intervals."""
    keys = (("melanoma_auc", "melanoma AUC"), ("p1_sensitivity", "P1 sensitivity"),
            ("p1_specificity", "P1 specificity"))
    fig, ax = plt.subplots(figsize=(8, 0.9 + 0.75 * len(scores)))
    for k, (key, label) in enumerate(keys):
        for j, s in enumerate(scores):
            v = s.summary.get(key, np.nan)
            lo, hi = s.summary.get(f"{key}_ci", (np.nan, np.nan))
            if not np.isfinite(v):
                continue
            y = j + (k - 1) * 0.22
            err = [[v - lo], [hi - v]] if np.isfinite(lo) else None
            ax.errorbar(v, y, xerr=err, fmt="o", color=f"C{k}", capsize=3, label=label if j == 0 else None)
    ax.set_yticks(range(len(scores)), [s.name for s in scores])
    ax.invert_yaxis()
    ax.set_xlim(0, 1.02)
    ax.axvline(0.5, color="#bbb", lw=0.8, ls="--")
    ax.set_xlabel("value (95 % CI, lesions resampled)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.5 / (0.9 + 0.75 * len(scores)) - 0.12), ncol=3,
              fontsize=8, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


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
    (directory / "transfer.json").write_text(json.dumps(
        {"run": str(run.root), "thresholds": run.prep.thresholds, "bootstrap": n_boot,
         "sets": [s.summary for s in scores]}, indent=2, default=_json_default))
    _write_html(directory, run.root.name, run.prep, scores, table, outside, n_boot)
    logger.info("Transfer report: %s", directory / "report.html")
    return TransferResult(directory, table, outside, scores)


def check_sets(datasets: Sequence[str], data_root: str | None = None,
               options: Mapping[str, Mapping[str, object]] | None = None) -> None:
    """Every named set (``test`` aside) is a known dataset whose table and images are found: checked for all of them
    before any is loaded, so the last set's typo does not wait for the others' predictions."""
    for name in datasets:
        if name != OWN_TEST:
            load_dataset(DataConfig(dataset=name, root=data_root, options=dict((options or {}).get(name) or {})))


def _json_default(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def _write_html(directory: Path, run_name: str, prep, scores: Sequence[SetScores], table: pd.DataFrame,
                outside: pd.DataFrame, n_boot: int) -> None:
    thresholds = ", ".join(f"P({k}) ≥ {v:.3f}" for k, v in prep.thresholds.items()) or "none stored (top-1 rule)"
    report = Report(f"LesionLab transfer report: {run_name}",
                    f"{len(scores)} sets · {prep.taxonomy} model · {prep.crop} {prep.image_size}px · TTA {prep.tta}")
    report.add("Shift table", table_html(table[list(SHIFT_COLUMNS)]) + (
        "<p class='muted'>Balanced accuracy, macro AUC (one vs rest, classes present) and ECE (15 bins) over the "
        "images whose diagnosis has a class in the model's taxonomy ('scored'). "
        f"{ood_column_note(scores)} 'test' is the run's own held-out test split.</p>"))
    report.add("Melanoma AUC and triage operating point", table_html(table[list(OPERATING_COLUMNS)]) + image_html(
        plot_operating_points(scores, directory / "figures" / "operating_points.png"), "operating points per set") +
        "<p class='muted'>Melanoma AUC uses every image whose melanoma status is known, P(melanoma) as the score "
        "(P(priority 1) for a triage model). P1 = priority 1 (malignant: refer) as decided by the model's stored "
        f"triage operating point ({thresholds}; otherwise the top-1 diagnosis). Intervals: 95 % percentile "
        f"bootstrap, {n_boot} resamples of lesions.</p>")
    body = ("<p>None: every scored image has a class in the model's taxonomy.</p>" if outside.empty
            else table_html(outside, index=False) + "<p class='muted'>These images are not in the accuracy/AUC "
            "columns (the model cannot be right or wrong about a class it lacks); they count in melanoma AUC and P1 "
            "rates where their melanoma / priority status is known.</p>")
    report.add("Diagnoses outside the model's classes", body)
    recalls = {}
    for s in scores:
        inside = s.frame[s.frame["truth"].notna()]
        recalls[s.name] = (inside["prediction"] == inside["truth"]).groupby(inside["truth"]).mean()
    per_class = pd.DataFrame(recalls).reindex(list(prep.class_names))
    per_class.index.name = "class recall"
    report.add("Per-class recall per set", table_html(per_class) +
               "<p class='muted'>Top-1 recall; a dash where the set has no image of the class.</p>")
    report.write(directory / "report.html")
