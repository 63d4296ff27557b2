"""VAE training on real images: the ELBO falls, ``lesionlab pretrain vae`` writes every artifact, and the saved
encoder loads back into the model zoo."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from lesionlab.cli import main
from lesionlab.config import DataConfig, ModelConfig, TrainConfig
from lesionlab.config.pretraining import VAEConfig
from lesionlab.data.prepare import prepare_data
from lesionlab.models.classifier import create_model
from lesionlab.pretraining.module import VAEModule
from lesionlab.pretraining.vae import build_vae

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "vae-pretrain.yaml"


def test_elbo_decreases_on_real_images(small_ham_csv: Path, tmp_path: Path) -> None:
    data = prepare_data(DataConfig(dataset="csv", csv=str(small_ham_csv), image_size=32, cache_dir=str(tmp_path)),
                        progress=False)
    batch = torch.from_numpy(np.asarray(data.images[data.rows[data.indices("train")[:32]]])).permute(0, 3, 1, 2)
    torch.manual_seed(0)
    vae = build_vae(VAEConfig(encoder="tiny-convnext", latent_dim=16), 32)
    module = VAEModule(vae, VAEConfig(encoder="tiny-convnext", latent_dim=16), TrainConfig(), (0.5,) * 3, (0.5,) * 3)
    opt = torch.optim.Adam(vae.parameters(), lr=2e-3)

    def neg_elbo() -> float:
        torch.manual_seed(123)  # the same ε for every evaluation
        with torch.no_grad():
            t = module.terms(batch, beta=1.0)
        return float(t.recon + t.kl)

    before = neg_elbo()
    for _ in range(15):
        opt.zero_grad()
        module.terms(batch, beta=1.0).loss.backward()
        opt.step()
    after = neg_elbo()
    assert after < 0.8 * before, (before, after)


def test_pretrain_writes_every_artifact(vae_run: Path) -> None:
    for name in ("config.yaml", "splits.csv", "encoder.safetensors", "vae.pt", "steps.csv", "history.csv",
                 "metrics.json", "latent_projection.csv", "report.html", "figures/reconstructions.png",
                 "figures/prior_samples.png", "figures/latent_projection.png", "figures/loss_curves.png"):
        assert (vae_run / name).is_file(), name
    html = (vae_run / "report.html").read_text()
    for section in ("Reconstructions", "Samples from the prior", "Latent space", "Loss curves",
                    "Encoder for the model zoo", "data:image/png;base64,"):
        assert section in html, section
    metrics = json.loads((vae_run / "metrics.json").read_text())
    assert metrics["zoo_load"]["missing"] == 0 and metrics["val_kl"] >= 0


def test_beta_warms_up_per_step_on_the_train_split_only(vae_run: Path) -> None:
    steps = pd.read_csv(vae_run / "steps.csv")
    splits = pd.read_csv(vae_run / "splits.csv")
    n_train = int((splits["split"] == "train").sum())
    assert len(steps) == 2 * (n_train // 16)  # drop_last: only train-split images were fed
    assert steps["beta"].iloc[0] == 0.0
    assert steps["beta"].is_monotonic_increasing and steps["beta"].iloc[-1] == 1.0
    assert (steps["kl"] >= 0).all()
    projected = set(pd.read_csv(vae_run / "latent_projection.csv")["image_id"])
    assert projected <= set(splits.loc[splits["split"] == "val", "image_id"])  # held-out images only


def test_encoder_loads_back_into_the_model_zoo(vae_run: Path) -> None:
    weights = vae_run / "encoder.safetensors"
    model = create_model(ModelConfig(backbone="tiny-convnext", weights=str(weights), head="mlp"), 3)
    vae_state = torch.load(vae_run / "vae.pt", weights_only=False)["state_dict"]
    backbone = model.backbone.state_dict()
    assert backbone.keys() == {k[len("backbone."):] for k in vae_state if k.startswith("backbone.")}
    for key, value in backbone.items():
        assert torch.equal(value, vae_state[f"backbone.{key}"]), key
    fresh = create_model(ModelConfig(backbone="tiny-convnext", head="mlp"), 3).backbone.state_dict()
    assert any(not torch.equal(fresh[k], backbone[k]) for k in backbone)  # really the trained weights
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 3)


def test_bad_encoder_is_a_one_line_error(small_ham_csv: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["pretrain", "vae", "--output-dir", str(tmp_path), "--config", str(CONFIG),
                 "vae.encoder=tiny-resnet",
                 "data.image_size=32"])
    assert code == 2
    assert "vae.encoder must be a timm ConvNeXt" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # nothing written before the check


def test_pretrain_on_merged_sources_checks_for_a_source_shortcut(tmp_path: Path) -> None:
    from tests.data.test_merge import HAM_LABELS, ISIC_LABELS, _write_source

    a = _write_source(tmp_path / "a", "a", HAM_LABELS, 48, (200, 120, 110), 0)
    b = _write_source(tmp_path / "b", "b", ISIC_LABELS, 48, (90, 90, 140), 1)
    sources = f"[{{dataset: csv, csv: {a}}}, {{dataset: csv, csv: {b}, name: other}}]"
    out = tmp_path / "runs"
    assert main(["-q", "pretrain", "vae", "--output-dir", str(out), "--config", str(CONFIG),
                 "data.dataset=merged",
                 f"data.root={tmp_path}", f"data.options={{taxonomy: triage, sources: {sources}}}",
                 "data.image_size=32", f"data.cache_dir={tmp_path}/cache", "vae.encoder=tiny-convnext",
                 "vae.latent_dim=4", "vae.grid_images=2", "train.epochs=1", "train.batch_size=16",
                 "train.progress=false"]) == 0
    (run,) = list(out.iterdir())
    check = json.loads((run / "metrics.json").read_text())["source_check"]
    assert check["warning"] and check["sources"] == {"csv": 48, "other": 48}
    assert set(pd.read_csv(run / "splits.csv")["source"]) == {"csv", "other"}
    assert "Source-shortcut check" in (run / "report.html").read_text()
