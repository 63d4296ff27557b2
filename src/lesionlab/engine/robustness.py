"""``lesionlab robustness``: a run (or ensemble) scored on its held-out test split under image corruptions.

For every corruption and severity the balanced error (1 − balanced accuracy, the ISIC metric's complement) is
reported, with its mean over severities and the ratio to the clean balanced error (MedMNIST-C / ImageNet-C's
relative error). Corruptions are applied to the cached test pixels, i.e. after the crop and resize the model uses.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from torch import nn

from lesionlab.engine.core.run_data import load_run, prepare_run_data, test_arrays
from lesionlab.errors import EvaluationInputError
from lesionlab.evaluation.corruptions import CORRUPTIONS, SEVERITIES, corrupt_batch
from lesionlab.evaluation.metrics import balanced_accuracy
from lesionlab.inference.predict import predict_probs
from lesionlab.inference.tta import get_tta
from lesionlab.models.checkpoint import Preprocessing
from lesionlab.reports.diagnostic_plots import plot_examples, plot_robustness
from lesionlab.reports.html import Report, image_html, table_html

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RobustnessResult:
    directory: Path
    table: pd.DataFrame  # index: corruption; columns: severities, mean, relative, delta
    clean_error: float
    seconds: float


def balanced_error(model: nn.Module, images: np.ndarray, y: np.ndarray, prep: Preprocessing, tta: str,
                   batch_size: int = 256) -> float:
    probs = predict_probs(model, images, prep.mean, prep.std, batch_size=batch_size, temperature=prep.temperature,
                          tta=tta)
    return 1.0 - balanced_accuracy(y, probs.argmax(axis=1), len(prep.class_names))


def robustness_table(model: nn.Module, images: np.ndarray, y: np.ndarray, prep: Preprocessing, *,
                     corruptions: Sequence[str], severities: Sequence[int] = SEVERITIES, tta: str = "none",
                     seed: int = 0, batch_size: int = 256) -> tuple[pd.DataFrame, float]:
    """Balanced error per corruption (rows) and severity (columns), plus mean, relative and Δ to clean."""
    clean = balanced_error(model, images, y, prep, tta, batch_size)
    rows = {}
    for name in corruptions:
        errors = {str(s): balanced_error(model, corrupt_batch(images, name, s, seed), y, prep, tta, batch_size)
                  for s in severities}
        mean = float(np.mean(list(errors.values())))
        rows[name] = {**errors, "mean": mean, "relative to clean": mean / clean if clean > 0 else float("nan"),
                      "Δ vs clean": mean - clean}
        logger.info("%s: mean balanced error %.4f (clean %.4f)", name, mean, clean)
    table = pd.DataFrame(rows).T
    table.index.name = "corruption"
    return table, clean


def _check_names(corruptions: Sequence[str] | None, severities: Sequence[int]) -> list[str]:
    names = list(corruptions) if corruptions else CORRUPTIONS.names()
    for n in names:
        CORRUPTIONS.get(n)  # unknown names list the valid ones
    bad = [s for s in severities if s not in SEVERITIES]
    if bad or not severities:
        raise EvaluationInputError(f"severities must be a non-empty subset of {SEVERITIES}, got {list(severities)}")
    return names


def evaluate_robustness(run_dir: str | Path, *, out_dir: str | Path | None = None,
                        corruptions: Sequence[str] | None = None, severities: Sequence[int] = SEVERITIES,
                        max_images: int | None = None, tta: str | None = None, data_root: str | None = None,
                        seed: int = 0) -> RobustnessResult:
    """Score ``run_dir`` on its test split under every corruption; write a table, a plot and a report.
    ``tta`` defaults to the run's own (its ``eval.tta``, stored with the model)."""
    t0 = time.perf_counter()
    names = _check_names(corruptions, severities)
    if tta is not None:
        get_tta(tta)
    run = load_run(run_dir)
    tta = run.prep.tta if tta is None else tta
    cfg, data = prepare_run_data(run, data_root)
    _, images, y = test_arrays(data, max_images, seed)
    table, clean = robustness_table(run.model, images, y, run.prep, corruptions=names, severities=severities,
                                    tta=tta, seed=seed, batch_size=cfg.eval.batch_size)
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    directory = Path(out_dir) if out_dir else run.root / "robustness" / stamp
    (directory / "figures").mkdir(parents=True, exist_ok=True)
    table.to_csv(directory / "robustness.csv")
    plot_robustness(table, clean, directory / "figures" / "robustness.png")
    examples = {n: [images[0]] + [corrupt_batch(images[:1], n, s, seed)[0] for s in severities] for n in names}
    plot_examples(examples, directory / "figures" / "corruption_examples.png")
    seconds = time.perf_counter() - t0
    summary = {"run": str(run.root), "images": len(y), "tta": tta, "clean_balanced_error": clean,
               "mean_corrupted_balanced_error": float(table["mean"].mean()), "seconds": seconds}
    (directory / "robustness.json").write_text(json.dumps(summary, indent=2))
    report = Report(f"LesionLab robustness: {run.root.name}",
                    f"{len(y)} held-out test images · {run.prep.image_size}px · TTA {tta} · {seconds:.0f}s")
    report.add_cards("Summary", [("clean balanced error", clean),
                                 ("mean corrupted balanced error", summary["mean_corrupted_balanced_error"]),
                                 ("test images", len(y))])
    report.add("Balanced error per corruption and severity", table_html(table) +
               "<p class='muted'>Balanced error = 1 − balanced accuracy. 'Relative to clean' = mean corrupted / "
               "clean balanced error. Corruptions are applied to the model's own crop and size.</p>")
    report.add("Balanced error against severity", image_html(directory / "figures" / "robustness.png", "robustness"))
    report.add("Examples", image_html(directory / "figures" / "corruption_examples.png", "corruption examples"))
    report.write(directory / "report.html")
    return RobustnessResult(directory, table, clean, seconds)
