"""Student vs teacher: test metrics, parameter counts, batch-1 CPU latency, and the distillation report."""

from __future__ import annotations

import html
import statistics
import time
from pathlib import Path

import pandas as pd
import torch
import yaml
from torch import nn

from lesionlab.config import to_dict
from lesionlab.config.pretraining import DistillConfig
from lesionlab.reports.html import Report, table_html
from lesionlab.reports.triage_section import is_triage
from lesionlab.runs import RunPaths

#: The student's own run report, renamed when report.html becomes the distillation report.
STUDENT_REPORT = "student_report.html"


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.inference_mode()
def cpu_latency_ms(model: nn.Module, image_size: int, runs: int = 30, warmup: int = 3, threads: int = 1) -> float:
    """Median wall time of one batch-1 forward pass on the CPU with ``threads`` intra-op threads."""
    model = model.eval().cpu()
    x = torch.randn(1, 3, image_size, image_size)
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for _ in range(warmup):
            model(x)
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            model(x)
            times.append((time.perf_counter() - t0) * 1000)
    finally:
        torch.set_num_threads(old)
    return statistics.median(times)


def _row(model: nn.Module, metrics: dict, image_size: int, runs: int) -> dict:
    row = {"parameters": parameter_count(model), "CPU latency ms (batch 1, 1 thread)": cpu_latency_ms(
        model, image_size, runs), "test balanced accuracy": metrics["balanced_accuracy"],
           "test macro AUC": metrics["auc_macro"], "test accuracy": metrics["accuracy"]}
    if is_triage(metrics.get("class_names")):
        row.update({f"test sensitivity {c}": metrics["per_class"][c]["recall"] for c in ("P1", "P2", "P3")})
    return row


def compare_models(teacher: nn.Module, student: nn.Module, teacher_metrics: dict, student_metrics: dict, *,
                   image_size: int, runs: int = 30) -> pd.DataFrame:
    """Rows ``teacher``, ``student`` and ``student − teacher`` (ratios for size and latency)."""
    t = _row(teacher, teacher_metrics, image_size, runs)
    s = _row(student, student_metrics, image_size, runs)
    gap = {k: s[k] - t[k] for k in t}
    gap["parameters"] = t["parameters"] / s["parameters"]  # the size ratio teacher / student
    gap["CPU latency ms (batch 1, 1 thread)"] = t["CPU latency ms (batch 1, 1 thread)"] / max(
        s["CPU latency ms (batch 1, 1 thread)"], 1e-9)
    frame = pd.DataFrame({"teacher": t, "student": s, "student − teacher (size, latency: teacher ÷ student)": gap}).T
    frame.index.name = "model"
    return frame


def write_distill_report(run: RunPaths, cfg: DistillConfig, teacher_root: Path, summary: pd.DataFrame,
                         student_metrics: dict, teacher_metrics: dict, student_backbone: str) -> Path:

    ratio = summary.iloc[2]["parameters"]
    gap = student_metrics["balanced_accuracy"] - teacher_metrics["balanced_accuracy"]
    report = Report(title=f"LesionLab distillation: {cfg.name}",
                    subtitle=f"teacher {teacher_root} → student {student_backbone}"
                             + (f" (from {cfg.init_from})" if cfg.init_from else "") + f" · T = {cfg.temperature} · "
                             f"α = {cfg.alpha} · {cfg.train.epochs} epochs")
    report.add_cards("Student vs teacher (held-out test split)", [
        ("teacher balanced accuracy", teacher_metrics["balanced_accuracy"]),
        ("student balanced accuracy", student_metrics["balanced_accuracy"]), ("gap (student − teacher)", gap),
        ("size ratio (teacher ÷ student)", round(float(ratio), 2))])
    note = "" if ratio >= 5 else "<p class='notice'>The student is less than 5× smaller than the teacher.</p>"
    report.add("Comparison", table_html(summary) + note +
               "<p class='muted'>Both models are scored on the teacher's test split (never trained or validated "
               "on by the teacher or the student), without test-time augmentation unless eval.tta says otherwise. "
               "Latency: median of batch-1 forward passes on the CPU with one thread (shared machines inflate it)."
               f"</p><p>The student's full run report: <a href='{STUDENT_REPORT}'>{STUDENT_REPORT}</a>.</p>")
    report.add("Configuration", f"<pre>{html.escape(yaml.safe_dump(to_dict(cfg), sort_keys=False))}</pre>")
    return report.write(run.report)
