"""Render a model card (``card.json`` of a released model, or what a run directory knows) as Markdown."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HEADLINE = ("balanced_accuracy", "auc_macro", "accuracy", "priority1_sensitivity", "priority1_specificity",
            "mel_sensitivity_at_operating_point", "auc_mel")


def load_card(model_dir: str | Path) -> dict[str, Any] | None:
    """The ``card.json`` beside a model (a released model folder, or a run that has one), else None."""
    path = Path(model_dir)
    path = path / "card.json" if path.is_dir() else path.parent / "card.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _ci(fig: dict[str, float]) -> str:
    return f"{fig['value']:.3f} ({fig['lo']:.3f}–{fig['hi']:.3f})"


def card_markdown(card: dict[str, Any]) -> str:
    """The card as Markdown: data and licence, how it was built, figures with 95 % CIs, use and limitations."""
    arch, tr = card["architecture"], card["training"]
    lines = [f"# Model card: {card['name']}", "",
             f"**Licence:** {card.get('licence_note', '')}", "",
             "## Intended use", "", card["intended_use"], "",
             "## Model", "",
             f"- {arch['backbone']} (initialised from {arch['pretrained']} weights), head `{arch['head']}`, "
             f"colour constancy `{arch.get('colour_constancy', 'none')}`",
             f"- input: {arch['input']['crop']} crop at {arch['input']['image_size']} px, test-time augmentation "
             f"`{arch['input']['tta']}`; classes ({arch['taxonomy']}): {', '.join(arch['classes'])}",
             f"- temperature {card['calibration']['temperature']:.3f}; triage operating point: "
             f"{card['triage_operating_point']['rule']} "
             f"({', '.join(f'{k} ≥ {v:.3f}' for k, v in card['triage_operating_point']['thresholds'].items())})",
             f"- weights stored as {arch.get('weights_format', 'fp16')}; "
             f"CPU latency, batch 1 with TTA: {card.get('latency_ms_batch1', float('nan')):.0f} ms; files: "
             + ", ".join(f"{k} {v} MB" for k, v in card.get("files_mb", {}).items()), "",
             "## Training data", "",
             f"- {tr['dataset']} ({tr['licence']}); cite: {tr['citation']}",
             f"- images per split: {tr['images']}; trained on {tr['trained_on']}; calibrated on {tr['calibrated_on']};"
             f" held out: {tr['held_out']}",
             f"- built by `{tr['command']}`: {tr['epochs']} epochs (best {tr['best_epoch']}), seed {tr['seed']}, "
             f"{tr['fit_minutes']} min of training on {tr['machine']}", "",
             "## Evaluation (95 % bootstrap intervals, resampling lesions)", ""]
    for name, ev in card["evaluations"].items():
        figs = ev["figures"]
        lines += [f"### {name}: {ev['n_images']} images, {ev['n_lesions']} lesions "
                  f"({', '.join(f'{k} {v}' for k, v in ev['class_counts'].items())})", "",
                  "| metric | value (95 % CI) |", "|---|---|"]
        lines += [f"| {k} | {_ci(figs[k])} |" for k in HEADLINE if k in figs]
        if ev.get("ece") is not None:
            lines.append(f"| expected calibration error | {ev['ece']:.3f} |")
        per_class = [k.removeprefix("recall_") for k in figs if k.startswith("recall_")]
        if len(per_class) > 2:
            lines += ["", "| class | recall (95 % CI) | AUC (95 % CI) |", "|---|---|---|"]
            lines += [f"| {c} | {_ci(figs['recall_' + c])} | {_ci(figs['auc_' + c])} |" for c in per_class]
        lines.append("")
    ood = card.get("ood_detector")
    if ood:
        bench = ood.get("benchmark", {})
        lines += ["## Out-of-distribution flag", "",
                  f"- {ood['method']}; {ood['rule']}",
                  f"- test lesions flagged: {100 * ood['test_lesions_flagged']:.1f} %; offline OOD benchmark "
                  f"(`{bench.get('command', 'lesionlab ood-eval')}`): far-OOD AUROC {bench.get('far_ood_auroc')}, "
                  f"FPR@95TPR {bench.get('far_ood_fpr95')}; near-OOD (severe corruptions) AUROC "
                  f"{bench.get('near_ood_auroc')}", "- a flagged image gets no triage priority (not assessable)", ""]
    lines += ["## Limitations", "", *[f"- {item}" for item in card["limitations"]], ""]
    return "\n".join(lines)


__all__ = ["card_markdown", "load_card"]
