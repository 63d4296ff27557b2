"""VAE architecture: shapes, the reparameterisation, gradients, bad configurations."""

from __future__ import annotations

import pytest
import torch

from lesionlab.config import ConfigError
from lesionlab.config.pretraining import VAEConfig
from lesionlab.models.backbones import create_backbone
from lesionlab.pretraining.losses import vae_loss
from lesionlab.pretraining.vae import ConvNeXtVAE, build_vae, stage_layout

CASES = [  # (vae kwargs, image size)
    ({"encoder": "tiny-convnext", "latent_dim": 8}, 32),
    ({"encoder": "tiny-convnext", "latent_dim": 16}, 64),
    ({"encoder": "test_convnext", "latent_dim": 4, "decoder_depths": (1, 0, 0, 1)}, 32),
]


@pytest.mark.parametrize(("kwargs", "size"), CASES)
def test_shapes(kwargs: dict, size: int) -> None:
    vae = build_vae(VAEConfig(**kwargs), size)
    x = torch.randn(3, 3, size, size)
    logits, mu, logvar = vae(x)
    assert logits.shape == x.shape
    assert mu.shape == logvar.shape == (3, kwargs["latent_dim"])
    assert torch.isfinite(logits).all()
    assert vae.sample(5).shape == (5, 3, size, size)
    assert float(vae.sample(2).min()) >= 0 and float(vae.sample(2).max()) <= 1


def test_default_is_convnext_tiny_with_latent_256() -> None:
    cfg = VAEConfig()
    assert (cfg.encoder, cfg.latent_dim) == ("convnext-tiny", 256)
    with torch.device("meta"):
        vae = build_vae(cfg, 64)
    assert vae.fc_mu.in_features == 768 and vae.fc_mu.out_features == vae.fc_logvar.out_features == 256
    chans, reductions, depths = stage_layout(vae.backbone)
    assert (chans, reductions, depths) == ([96, 192, 384, 768], [4, 8, 16, 32], [3, 3, 9, 3])
    # the decoder mirrors the encoder: deepest stage first, the same block counts reversed
    blocks = [sum(type(m).__name__ == "ConvNeXtBlock" for m in stage) for stage in vae.decoder.stages]
    assert blocks == [3, 9, 3, 3]


def test_encoder_is_a_zoo_backbone() -> None:
    vae = build_vae(VAEConfig(encoder="tiny-convnext", latent_dim=8), 32)
    zoo = create_backbone("tiny-convnext")
    assert vae.backbone.state_dict().keys() == zoo.state_dict().keys()


def test_gradients_reach_every_parameter() -> None:
    torch.manual_seed(0)
    vae = build_vae(VAEConfig(encoder="tiny-convnext", latent_dim=8), 32)
    x = torch.randn(4, 3, 32, 32)
    logits, mu, logvar = vae(x)
    vae_loss(logits, torch.rand_like(x), mu, logvar, beta=1.0).loss.backward()
    missing = [n for n, p in vae.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing


def test_reparameterisation() -> None:
    torch.manual_seed(0)
    mu = torch.full((20_000, 2), 3.0)
    z = ConvNeXtVAE.reparameterise(mu, torch.full_like(mu, 2 * torch.log(torch.tensor(0.5))))
    assert z.mean().item() == pytest.approx(3.0, abs=0.02)
    assert z.std().item() == pytest.approx(0.5, abs=0.02)
    assert torch.allclose(ConvNeXtVAE.reparameterise(mu, torch.full_like(mu, -30.0)), mu, atol=1e-5)


def test_decoding_the_mean_is_deterministic() -> None:
    vae = build_vae(VAEConfig(encoder="tiny-convnext", latent_dim=8), 32).eval()
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(vae(x, sample=False)[0], vae(x, sample=False)[0])
    assert not torch.equal(vae(x)[0], vae(x)[0])


@pytest.mark.parametrize(("kwargs", "size", "match"), [
    ({"encoder": "tiny-resnet"}, 32, "must be a timm ConvNeXt"),
    ({"encoder": "tiny-convnext"}, 48, "multiple of 32"),
    ({"encoder": "tiny-convnext", "decoder_depths": (1, 1)}, 32, "needs 4 values"),
])
def test_bad_configurations(kwargs: dict, size: int, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        build_vae(VAEConfig(**kwargs), size)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"latent_dim": 0}, "vae.latent_dim"), ({"beta": -1}, "vae.beta"), ({"cycles": 0}, "vae.cycles"),
    ({"cycle_ratio": 0}, "vae.cycle_ratio"), ({"decoder_depths": ()}, "vae.decoder_depths"),
])
def test_config_validation_names_the_key(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        VAEConfig(**kwargs)
