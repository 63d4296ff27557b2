"""A variational auto-encoder whose encoder is any timm ConvNeXt and whose decoder mirrors it.

Encoder: the zoo's headless backbone (:func:`lesionlab.models.backbones.create_backbone`, random init), i.e. the
ConvNeXt trunk, global average pooling and the head's LayerNorm, followed by two linear maps to the latent mean
``μ`` and log-variance ``log σ²``. Because the encoder *is* a zoo backbone, its state dict loads back unchanged with
``model.weights: PATH``. Decoder: a linear map from ``z`` to the deepest feature map, then per encoder stage (deepest
first) ConvNeXt blocks and a LayerNorm + transposed convolution that undoes the stage's down-sampling, ending with
the mirror of the 4×4 patchify stem. It outputs logits per pixel; ``sigmoid(logits)`` is the reconstruction in
``[0, 1]``.
"""

from __future__ import annotations

import logging

import torch
from timm.layers import LayerNorm2d
from timm.models.convnext import ConvNeXt, ConvNeXtBlock
from torch import nn

from lesionlab.config import ConfigError
from lesionlab.config.pretraining import VAEConfig
from lesionlab.models.backbones import create_backbone, resolve_backbone
from lesionlab.models.classifier import feature_dim

logger = logging.getLogger(__name__)

LOGVAR_RANGE = (-30.0, 20.0)  # keeps exp(log σ²) finite early in training


def create_convnext_encoder(name: str) -> nn.Module:
    """A randomly initialised headless timm ConvNeXt from the zoo; other architectures are a :class:`ConfigError`."""
    timm_name = resolve_backbone(name)
    encoder = create_backbone(name, pretrained=False)
    if not isinstance(encoder, ConvNeXt):
        raise ConfigError(f"vae.encoder must be a timm ConvNeXt (e.g. convnext-tiny, tiny-convnext, convnext_atto), "
                          f"got {name!r} ({timm_name}, a {type(encoder).__name__})")
    return encoder


def stage_layout(encoder: ConvNeXt) -> tuple[list[int], list[int], list[int]]:
    """Channels, cumulative reductions and block counts of each encoder stage (shallowest first)."""
    chans = [int(f["num_chs"]) for f in encoder.feature_info]
    reductions = [int(f["reduction"]) for f in encoder.feature_info]
    depths = [len(stage.blocks) for stage in encoder.stages]
    return chans, reductions, depths


class MirroredConvNeXtDecoder(nn.Module):
    """``z`` → deepest feature map → (ConvNeXt blocks, up-sampling) per stage → 3-channel logits."""

    def __init__(self, latent_dim: int, image_size: int, chans: list[int], reductions: list[int],
                 depths: list[int]) -> None:
        super().__init__()
        if image_size % reductions[-1]:
            raise ConfigError(f"data.image_size must be a multiple of {reductions[-1]} for this ConvNeXt encoder "
                              f"(its total down-sampling), got {image_size}")
        self.start_chans = chans[-1]
        self.start_size = image_size // reductions[-1]
        self.project = nn.Linear(latent_dim, chans[-1] * self.start_size**2)
        stages: list[nn.Module] = []
        for i in reversed(range(len(chans))):
            layers: list[nn.Module] = [ConvNeXtBlock(chans[i]) for _ in range(depths[i])]
            factor = reductions[i] // reductions[i - 1] if i > 0 else reductions[0]
            out = chans[i - 1] if i > 0 else 3  # the last step mirrors the stem: back to RGB
            layers += [LayerNorm2d(chans[i]), nn.ConvTranspose2d(chans[i], out, kernel_size=factor, stride=factor)]
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.project(z).view(z.shape[0], self.start_chans, self.start_size, self.start_size)
        return self.stages(x)


class ConvNeXtVAE(nn.Module):
    """ConvNeXt encoder (``.backbone``, a zoo backbone) → ``μ``, ``log σ²`` → ``z`` → mirrored decoder."""

    def __init__(self, backbone: ConvNeXt, latent_dim: int, image_size: int,
                 decoder_depths: tuple[int, ...] | None = None) -> None:
        super().__init__()
        chans, reductions, depths = stage_layout(backbone)
        if decoder_depths is not None:
            if len(decoder_depths) != len(depths):
                raise ConfigError(f"vae.decoder_depths needs {len(depths)} values (one per encoder stage, deepest "
                                  f"first), got {list(decoder_depths)}")
            depths = list(reversed(decoder_depths))
        self.backbone = backbone
        self.latent_dim = latent_dim
        self.image_size = image_size
        features = feature_dim(backbone)
        self.fc_mu = nn.Linear(features, latent_dim)
        self.fc_logvar = nn.Linear(features, latent_dim)
        self.decoder = MirroredConvNeXtDecoder(latent_dim, image_size, chans, reductions, depths)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised images ``(B, 3, H, W)`` → ``μ``, ``log σ²`` (each ``(B, latent_dim)``)."""
        h = self.backbone(x)
        return self.fc_mu(h), self.fc_logvar(h).clamp(*LOGVAR_RANGE)

    @staticmethod
    def reparameterise(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """``z = μ + σ ε`` with ``ε ~ N(0, I)``: sampling that gradients flow through."""
        return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latent codes → per-pixel logits ``(B, 3, H, W)``."""
        return self.decoder(z)

    def forward(self, x: torch.Tensor, sample: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Logits of the reconstruction, ``μ`` and ``log σ²``; ``sample=False`` decodes ``μ`` (deterministic)."""
        mu, logvar = self.encode(x)
        z = self.reparameterise(mu, logvar) if sample else mu
        return self.decode(z), mu, logvar

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` images in ``[0, 1]`` decoded from the prior ``N(0, I)``."""
        device = next(self.parameters()).device
        z = torch.randn(n, self.latent_dim, generator=generator).to(device)
        return torch.sigmoid(self.decode(z))


def build_vae(cfg: VAEConfig, image_size: int) -> ConvNeXtVAE:
    """The VAE described by ``cfg`` for square ``image_size`` inputs."""
    vae = ConvNeXtVAE(create_convnext_encoder(cfg.encoder), cfg.latent_dim, image_size, cfg.decoder_depths)
    enc = sum(p.numel() for p in vae.backbone.parameters())
    total = sum(p.numel() for p in vae.parameters())
    logger.info("VAE: encoder %s (%d parameters), latent %d, decoder %d parameters", cfg.encoder, enc,
                cfg.latent_dim, total - enc)
    return vae
