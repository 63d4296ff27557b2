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


def _population_lines(training: dict[str, Any]) -> list[str]:
    """One line per training population (images, validation figures) and the source-shortcut figure."""
    lines = []
    for name, pop in (training.get("populations") or {}).items():
        val = pop.get("validation") or {}
        figures = ", ".join(f"{label} {val[k]:.3f}" for k, label in (
            ("balanced_accuracy", "balanced accuracy"), ("mel_auc", "melanoma AUC"),
            ("priority1_sensitivity", "priority-1 sensitivity"), ("priority1_specificity", "specificity"))
            if val.get(k) is not None)
        lines.append(f"- population {name}: {pop.get('images')} images; validation ({val.get('n', '?')} images, "
                     f"train-only member): {figures or 'not recorded'}")
    shortcut = training.get("source_shortcut_balanced_accuracy")
    if shortcut is not None:
        lines.append(f"- source shortcut: a pixel classifier tells the populations apart with balanced accuracy "
                     f"{shortcut:.3f} (chance 0.5), so each population is scored on its own")
    return lines


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
             f"{tr['fit_minutes']} min of training on {tr['machine']}",
             *_population_lines(tr), "",
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
                  f"(`{bench.get('command', 'lesionlab ood eval')}`): far-OOD AUROC {bench.get('far_ood_auroc')}, "
                  f"FPR@95TPR {bench.get('far_ood_fpr95')}; near-OOD (severe corruptions) AUROC "
                  f"{bench.get('near_ood_auroc')}", "- a flagged image gets no triage priority (not assessable)", ""]
    inv = card.get("acquisition_invariance")
    if inv:
        lines += ["## Acquisition invariance", "",
                  f"- {inv['check']}: the same triage priority for {100 * inv['triage_agreement']:.1f} %, the same "
                  f"top-1 diagnosis for {100 * inv['top1_agreement']:.1f} % (test-time augmentation {inv['tta']}, "
                  f"canonical chain {inv['canonical']}; `{inv['command']}`, {inv['date']})", ""]
    serving = card.get("serving")
    if serving:
        lines += ["## Served default", "", f"- {serving['default']}", f"- chosen by {serving['chosen_by']}",
                  *[f"- cheaper: {c['choice']} (`{c['flag']}`): test balanced accuracy "
                    f"{c['test_balanced_accuracy_change']:+.3f}" for c in serving.get("cheaper", [])], ""]
    lines += ["## Limitations", "", *[f"- {item}" for item in card["limitations"]], ""]
    return "\n".join(lines)


#: The figures of a run card, in order: ``metrics.json`` key → label.
RUN_FIGURES = {"balanced_accuracy": "balanced accuracy", "auc_macro": "macro AUC", "accuracy": "accuracy",
               "priority1_sensitivity": "priority-1 sensitivity", "priority1_specificity": "priority-1 specificity"}
NOT_RELEASED = ("not a released model: computed from the folder's metrics.json (its own held-out test split); a "
                "released model's card (`lesionlab release`) adds external test sets, latency, the OOD benchmark and "
                "its limitations")


def run_card(folder: str | Path) -> dict[str, Any] | None:
    """What a run or ensemble folder knows, as a card: its test figures from ``metrics.json`` (with their 95 %
    intervals), the triage operating point and the recipe; ``released`` is False. None without ``metrics.json``."""
    import yaml

    folder = Path(folder)
    if not (folder / "metrics.json").is_file():
        return None
    metrics = json.loads((folder / "metrics.json").read_text())
    ci = metrics.get("ci95") or {}
    op = metrics.get("triage_operating_point") or {}
    figures = {k: {"value": metrics.get(k, op.get(k.removeprefix("priority1_"))), "ci95": ci.get(k)}
               for k in RUN_FIGURES if k in metrics or k in ci}
    cfg = yaml.safe_load((folder / "config.yaml").read_text()) if (folder / "config.yaml").is_file() else {}
    cfg = cfg or {}
    members = json.loads((folder / "ensemble.json").read_text()).get("members", []) \
        if (folder / "ensemble.json").is_file() else []
    data, model, train = cfg.get("data") or {}, cfg.get("model") or {}, cfg.get("train") or {}
    return {"name": folder.name, "released": False, "note": NOT_RELEASED, "source": str(folder.resolve()),
            "kind": f"ensemble of {len(members)} members" if members else "run",
            "recipe": {"dataset": data.get("dataset"), "image_size": data.get("image_size"),
                       "backbone": model.get("backbone"), "pretrained": model.get("pretrained"),
                       "epochs": train.get("epochs"), "seed": train.get("seed")},
            "test": {"n_images": metrics.get("n"), "figures": figures,
                     "per_class_recall": {c: v.get("recall") for c, v in (metrics.get("per_class") or {}).items()
                                          if isinstance(v, dict)}},
            "triage_operating_point": op.get("statement") or op.get("rule")}


def _fig(fig: dict[str, Any]) -> str:
    value, ci = fig.get("value"), fig.get("ci95")
    text = "–" if value is None else f"{value:.3f}"
    return text + (f" ({ci[0]:.3f}–{ci[1]:.3f})" if ci and value is not None else "")


def run_card_markdown(card: dict[str, Any]) -> str:
    """A run card (:func:`run_card`) as Markdown, headed by its not-released note."""
    recipe = ", ".join(f"{k} {v}" for k, v in card["recipe"].items() if v is not None)
    lines = [f"# Run card: {card['name']}", "", f"**{card['note'][0].upper()}{card['note'][1:]}.**", "",
             f"- {card['kind']}: {card['source']}", f"- recipe: {recipe or 'unknown (no config.yaml)'}", "",
             f"## Held-out test split: {card['test']['n_images']} images (95 % bootstrap intervals)", "",
             "| metric | value (95 % CI) |", "|---|---|"]
    lines += [f"| {RUN_FIGURES[k]} | {_fig(f)} |" for k, f in card["test"]["figures"].items()]
    recall = {c: r for c, r in card["test"]["per_class_recall"].items() if r is not None}
    if recall:
        lines += ["", "recall per class: " + ", ".join(f"{c} {r:.2f}" for c, r in recall.items())]
    if card.get("triage_operating_point"):
        lines += ["", f"triage operating point: {card['triage_operating_point']}"]
    return "\n".join([*lines, ""])


__all__ = ["card_markdown", "load_card", "run_card", "run_card_markdown"]
