"""Tables, figures and the HTML report of ``compare-pretraining``."""

from __future__ import annotations

import html
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
import yaml

from lesionlab.config import ExperimentConfig, to_dict
from lesionlab.config.pretraining import ComparePretrainingConfig
from lesionlab.data.source_check import SourceCheckResult
from lesionlab.reports.dynamics import default_ranges, dynamics_table
from lesionlab.reports.html import Report, image_html, table_html
from lesionlab.reports.plots import save_figure
from lesionlab.reports.triage_section import is_triage, missed_urgent
from lesionlab.runs import RunPaths, TrainResult


def phase_ranges(cfg: ComparePretrainingConfig, epochs: int) -> list[tuple[int, int]]:
    """Slope ranges: the frozen phase and the fine-tuning phase, or thirds of a frozen-only run."""
    if cfg.finetune_epochs > 0:
        return [(1, cfg.frozen_epochs), (cfg.frozen_epochs + 1, max(epochs, cfg.frozen_epochs + 1))]
    return default_ranges(epochs)


def summarise(cfg: ComparePretrainingConfig, runs: dict[str, TrainResult],
              seconds: dict[str, float]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One summary row per arm (test metrics first, then the end-of-training dynamics) and the stacked dynamics."""
    rows, tables = {}, []
    for name, result in runs.items():
        m = result.metrics
        history = pd.read_csv(result.run.history)
        last = history.iloc[-1]
        row: dict = {}
        if is_triage(m.get("class_names")):
            for code in ("P1", "P2", "P3"):
                row[f"test sensitivity {code}"] = m["per_class"][code]["recall"]
            row["P1 triaged as P3"] = missed_urgent(m)[0]
        row.update({"test balanced accuracy": m["balanced_accuracy"], "test macro AUC": m["auc_macro"],
                    "test accuracy": m["accuracy"], "final train loss": last["train_loss"],
                    "final val loss": last["val_loss"], "loss gap (train − val)": last["train_loss"] - last["val_loss"],
                    "final train bal. acc.": last["train_bal_acc"], "final val bal. acc.": last["val_bal_acc"],
                    "bal. acc. gap (train − val)": last["train_bal_acc"] - last["val_bal_acc"],
                    "best val bal. acc.": history["val_bal_acc"].max(),
                    "best epoch": int(history.loc[history["val_bal_acc"].idxmax(), "epoch"]),
                    "seconds": seconds[name]})
        rows[name] = row
        table = dynamics_table(history, phase_ranges(cfg, int(history["epoch"].max())))
        tables.append(pd.concat({name: table}, names=["encoder", "metric"]))
    summary = pd.DataFrame(rows).T
    summary.index.name = "encoder"
    return summary, pd.concat(tables)


def plot_curves_side_by_side(runs: dict[str, TrainResult], path: Path, unfreeze_at: int | None) -> Path:
    """Rows: loss, balanced accuracy; one column per encoder (shared y axes); a dashed line where the stage opens."""
    n = len(runs)
    fig, axes = plt.subplots(2, n, figsize=(4.2 * n, 7), sharey="row", squeeze=False)
    for j, (name, result) in enumerate(runs.items()):
        h = pd.read_csv(result.run.history)
        for i, (key, title) in enumerate((("loss", "loss"), ("bal_acc", "balanced accuracy"))):
            ax = axes[i][j]
            ax.plot(h["epoch"], h[f"train_{key}"], marker="o", ms=3, label="train")
            ax.plot(h["epoch"], h[f"val_{key}"], marker="o", ms=3, label="validation")
            if unfreeze_at:
                ax.axvline(unfreeze_at + 0.5, color="grey", ls="--", lw=1, label="last stage unfrozen")
            ax.set_title(f"{name}: {title}")
            ax.set_xlabel("epoch")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    return save_figure(fig, path, dpi=100)


def _arm_table(experiments: dict[str, ExperimentConfig]) -> pd.DataFrame:
    frame = pd.DataFrame({name: {"backbone": e.model.backbone, "pretrained": str(e.model.pretrained),
                                 "weights": e.model.weights or "–"} for name, e in experiments.items()}).T
    frame.index.name = "encoder"
    return frame


def write_compare_report(out: RunPaths, cfg: ComparePretrainingConfig, experiments: dict[str, ExperimentConfig],
                         runs: dict[str, TrainResult], summary: pd.DataFrame, dynamics: pd.DataFrame,
                         source_check: SourceCheckResult | None = None) -> Path:
    exp = cfg.experiment
    unfreeze = cfg.frozen_epochs if cfg.finetune_epochs else None
    curves = plot_curves_side_by_side(runs, out.figures / "learning_curves.png", unfreeze)
    phase = (f"{cfg.frozen_epochs} epochs frozen, then {cfg.finetune_epochs} with the last stage unfrozen at lr "
             f"{cfg.finetune_lr:g}" if cfg.finetune_epochs else f"{cfg.frozen_epochs} epochs, encoder frozen")
    report = Report(title=f"LesionLab pretraining comparison: {cfg.name}",
                    subtitle=f"{exp.data.dataset} · task {exp.task} · {exp.data.image_size}px · head "
                             f"{exp.model.head} · {exp.train.optimizer.name} · loss {exp.train.loss.name} · {phase}")
    metric_cols = [c for c in summary.columns if c.startswith(("test", "P1"))]
    report.add("Test metrics per encoder (held-out lesion-disjoint test split)", table_html(summary[metric_cols]) +
               "<p class='muted'>Sensitivity per triage priority first (P1 = malignant). Every arm shares the data, "
               "split, head, optimizer, loss, epochs and seed; only the encoder differs (checked).</p>")
    if source_check is not None:
        report.add("Source-shortcut check", f"<p class='{'notice' if source_check.warning else 'muted'}'>"
                   f"{html.escape(source_check.message)}</p>")
    report.add("Learning curves side by side", image_html(curves, "learning curves per encoder"))
    report.add("End of training and overfitting gap", table_html(summary.drop(columns=metric_cols)))
    for name in runs:
        report.add(f"Training dynamics: {name}", table_html(dynamics.loc[name]) +
                   "<p class='muted'>Slopes are least-squares changes per epoch over the epoch ranges (phases).</p>")
    runs_html = "".join(f"<li>{html.escape(n)}: <code>{html.escape(str(r.run.root))}</code></li>"
                        for n, r in runs.items())
    report.add("Encoders and runs", table_html(_arm_table(experiments)) + f"<ul>{runs_html}</ul>" +
               (f"<p>VAE run: <code>{html.escape(cfg.vae_run)}</code> (checked: it trained on no lesion of the "
                "test split).</p>" if cfg.vae_run else ""))
    report.add("Configuration", f"<pre>{html.escape(yaml.safe_dump(to_dict(cfg), sort_keys=False))}</pre>")
    return report.write(out.report)
