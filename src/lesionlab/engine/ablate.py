"""Leave-one-out ablation (the HAM10000 focal-loss study's Table I): the full configuration, then one run per
factor with that factor removed, compared on the held-out test split.

What "removing" a factor means is defined once, in :data:`ABLATIONS`; a factor that is not part of the full
configuration (e.g. ``focal`` when the loss is already cross-entropy) is an error rather than a duplicate run.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from lesionlab.config import ConfigError, ExperimentConfig, load_config
from lesionlab.engine.ablate_factors import ABLATIONS, parse_factors
from lesionlab.reports.results_table import markdown_table, marked_frame, plot_validation_curves, run_row
from lesionlab.runs import RunPaths, discards_unstarted_runs
from lesionlab.training.validation import check_component_names

logger = logging.getLogger(__name__)


def ablation_configs(config: str | Path | None, factors: Sequence[str],
                     overrides: Sequence[str] = ()) -> list[tuple[str, ExperimentConfig]]:
    """``("full", cfg)`` then ``("-factor", cfg without it)`` for each factor; every config is checked first."""
    full = load_config(config, list(overrides))
    check_component_names(full)
    out = [("full", full)]
    for name in factors:
        factor = ABLATIONS.get(name)
        if not factor.present(full):
            raise ConfigError(f"factor {name!r} ({factor.meaning}) is not part of the full configuration, so "
                              "removing it would repeat the full run; drop it from --factors")
        cfg = load_config(config, [*overrides, *factor.remove(full)])
        check_component_names(cfg)
        out.append((f"-{name}", cfg))
    return out


@dataclass(frozen=True)
class AblationResult:
    directory: Path
    table: pd.DataFrame


@discards_unstarted_runs
def run_ablation(config: str | Path | None, factors: str | Sequence[str], overrides: Sequence[str] = (), *,
                 output_dir: str | Path | None = None) -> AblationResult:
    """Train the full config and each leave-one-out variant; write ``results.{csv,md}``, ``report.html``."""
    from lesionlab.engine.train import train

    names = parse_factors(factors)
    variants = ablation_configs(config, names, overrides)
    full = variants[0][1]
    root = RunPaths.create(output_dir or full.output_dir, f"ablation-{full.name}").root
    rows, histories = [], {}
    for i, (label, cfg) in enumerate(variants, start=1):
        logger.info("Ablation run %d/%d: %s", i, len(variants), label)
        t0 = time.perf_counter()
        slug = "full" if label == "full" else f"without-{label[1:]}"
        result = train(dataclasses.replace(cfg, name=slug), run=RunPaths.create(root, slug))
        histories[label] = pd.read_csv(result.run.history)
        classes = list(result.metrics["per_class"])
        rows.append({"variant": "full" if label == "full" else f"− {label[1:]}",
                     **run_row(result.metrics, classes), "seconds": time.perf_counter() - t0,
                     "run": result.run.root.name})
    table = pd.DataFrame(rows).set_index("variant")
    table.to_csv(root / "results.csv")
    _write_outputs(root, table, histories, names)
    return AblationResult(root, table)


def _write_outputs(root: Path, table: pd.DataFrame, histories: dict[str, pd.DataFrame],
                   factors: Sequence[str]) -> None:
    from lesionlab.reports.html import Report, image_html, table_html

    metric_cols = [c for c in table.columns if c not in ("seconds", "run")]
    shown = marked_frame(table.drop(columns=["run"]).assign(seconds=table["seconds"].round().astype(int)),
                         metric_cols)
    meanings = "\n".join(f"- `−{f}`: {ABLATIONS.get(f).meaning}" for f in factors)
    note = ("Metrics on the held-out lesion-disjoint test split; recall_* = per-class sensitivity. "
            "★ = best value per column.")
    (root / "results.md").write_text(f"# Ablation (leave one factor out)\n\n{note}\n\n{markdown_table(shown)}\n"
                                     f"What removing each factor means:\n\n{meanings}\n")
    curves = plot_validation_curves(histories, root / "figures" / "val_curves.png", "Validation curves per variant")
    report = Report(title=f"LesionLab ablation: {root.name}", subtitle=f"factors: {', '.join(factors)}")
    report.add("Results", f"<p>{note}</p>" + table_html(shown) + "<ul>" + "".join(
        f"<li><code>−{f}</code>: {ABLATIONS.get(f).meaning}</li>" for f in factors) + "</ul>")
    report.add("Validation curves", image_html(curves, "validation curves per variant"))
    report.write(root / "report.html")
