"""The HTML report of a VAE pretraining run (the foundation's :class:`Report`, figures embedded)."""

from __future__ import annotations

import html
from pathlib import Path

import pandas as pd
import yaml

from lesionlab.config import to_dict
from lesionlab.config.pretraining import PretrainConfig
from lesionlab.data.prepare import PreparedData
from lesionlab.reports.html import Report, image_html, table_html
from lesionlab.runs import RunPaths


def write_vae_report(run: RunPaths, cfg: PretrainConfig, metrics: dict, seconds: dict[str, float],
                     figures: dict[str, Path], epochs: pd.DataFrame, data: PreparedData) -> Path:
    v = cfg.vae
    report = Report(
        title=f"LesionLab VAE pretraining: {cfg.name}",
        subtitle=f"{run.root.name} · {data.dataset.name} · encoder {v.encoder} (random init) · latent {v.latent_dim} · "
                 f"{cfg.data.image_size}px {cfg.data.crop} · {v.reconstruction.upper()} + β·KL, β schedule "
                 f"{v.beta_schedule} (β max {v.beta})")
    report.add_cards("Final epoch (validation images, never trained on)", [
        ("−ELBO (β = 1)", metrics["val_elbo"]), ("reconstruction", metrics["val_recon"]), ("KL", metrics["val_kl"]),
        ("β at the end", metrics["final_beta"]), ("epochs", metrics["epochs"]),
        ("fit seconds", round(seconds["fit"], 1))])
    n = metrics["images"]
    report.add("Encoder for the model zoo", (
        f"<p>Saved to <code>{html.escape(str(run.root / 'encoder.safetensors'))}</code> "
        f"({metrics['encoder_params']:,} parameters; the whole VAE has {metrics['vae_params']:,}). Use it with "
        f"<code>model.backbone={html.escape(v.encoder)} model.weights=PATH</code>; it loaded back into the zoo "
        f"backbone with {metrics['zoo_load']['loaded']} tensors matched and {metrics['zoo_load']['missing']} missing. "
        f"Inputs are normalised with mean {metrics['mean']} and std {metrics['std']}, as the zoo normalises this "
        f"backbone.</p><p>Trained on {n['train']} images (train split), validated on {n['val']}; the {n['test']} test "
        "images were not used, and labels were never given to the model.</p>"))
    if metrics.get("source_check"):
        check = metrics["source_check"]
        report.add("Source-shortcut check", f"<p class='{'notice' if check['warning'] else 'muted'}'>"
                   f"{html.escape(check['message'])}</p><p class='muted'>Sources: {html.escape(str(check['sources']))}"
                   "</p>")
    report.add("Reconstructions", image_html(figures["reconstructions"], "reconstructions"))
    report.add("Samples from the prior", image_html(figures["samples"], "prior samples"))
    if "latent" in figures:
        report.add("Latent space", image_html(figures["latent"], "latent projection") +
                   "<p class='muted'>Diagnoses colour the points only; the VAE never saw a label.</p>")
    report.add("Loss curves", image_html(figures["losses"], "loss curves") +
               "<p class='muted'>β is the KL weight at each optimisation step (the warm-up schedule).</p>")
    shown = epochs.set_index("epoch").drop(columns=["lr"], errors="ignore")
    report.add("History", table_html(shown))
    timing = pd.DataFrame({"seconds": seconds}).round(1)
    timing.index.name = "stage"
    report.add("Timing", table_html(timing))
    report.add("Configuration", f"<pre>{html.escape(yaml.safe_dump(to_dict(cfg), sort_keys=False))}</pre>")
    return report.write(run.report)
