"""Soft attention over backbone feature maps (Datta et al., "Soft-Attention Improves Skin Cancer Classification
Performance", 2021), insertable after a chosen backbone stage or at the end.

The block follows the study's Keras layer: ``K`` attention maps come from a 3D convolution whose kernel spans all
``C`` channels (depth ``C``, 3x3 in space, stride ``C`` in depth — one output slice per map), a ReLU, and a softmax
over the ``H*W`` positions of each map. The maps are summed, scaled by a learnable ``γ`` and multiplied with the
features. Both the attended and the original features are max-pooled (2x2) and concatenated, then ReLU + Dropout
0.5. :class:`AttentionBackbone` global-average-pools the result into ``2C`` features for any registered head.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from lesionlab.errors import LesionLabError
from lesionlab.registry import Registry

logger = logging.getLogger(__name__)

AttentionBuilder = Callable[[int], nn.Module]
ATTENTIONS: Registry[AttentionBuilder | None] = Registry("attention")
ATTENTIONS.add("none", None, help="no attention block (the backbone's own pooled features)")


class NoAttentionError(LesionLabError, ValueError):
    """Attention maps were asked of a model trained without an attention block."""


class SoftAttention(nn.Module):
    """``K`` spatial attention maps over a ``(B, C, H, W)`` feature tensor.

    ``forward`` returns ``(attended, maps)``: ``attended = γ · (Σ_k softmax_hw(relu(conv3d(x))_k)) · x`` with the
    input's shape, and ``maps`` of shape ``(B, K, H, W)`` (each map sums to 1 over space). ``gamma`` is a
    learnable scalar (shape ``(1,)``), initialised to ``gamma_init``.
    """

    def __init__(self, channels: int, num_maps: int = 16, gamma_init: float = 1.0) -> None:
        super().__init__()
        if channels < 1 or num_maps < 1:
            raise ValueError(f"channels and num_maps must be positive, got {channels} and {num_maps}")
        self.channels = channels
        self.num_maps = num_maps
        # The 3D kernel (K, 1, C, 3, 3) is stored without its singleton input-channel axis so the model can still be
        # moved to channels-last memory format (which only accepts 4D tensors).
        self.weight = nn.Parameter(torch.empty(num_maps, channels, 3, 3))
        self.bias = nn.Parameter(torch.zeros(num_maps))
        nn.init.kaiming_uniform_(self.weight, nonlinearity="relu")  # the study's he_uniform
        self.gamma = nn.Parameter(torch.full((1,), float(gamma_init)))

    def attention_maps(self, x: torch.Tensor) -> torch.Tensor:
        """Softmax-normalised maps ``(B, K, H, W)`` for features ``x`` ``(B, C, H, W)``."""
        b, c, h, w = x.shape
        if c != self.channels:
            raise ValueError(f"SoftAttention expects {self.channels} channels, got {c}")
        # Depth = stride = C: the kernel covers every channel once and yields one depth slice per map.
        logits = F.conv3d(x.unsqueeze(1), self.weight.unsqueeze(1), self.bias, stride=(c, 1, 1), padding=(0, 1, 1))
        logits = F.relu(logits).squeeze(2)  # (B, K, 1, H, W) -> (B, K, H, W)
        return logits.flatten(2).softmax(-1).view(b, self.num_maps, h, w)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        maps = self.attention_maps(x)
        attended = self.gamma * maps.sum(1, keepdim=True) * x
        return attended, maps


class SoftAttentionBlock(nn.Module):
    """The study's block: soft attention, 2x2 max-pool of attended and plain features, concatenation, ReLU,
    Dropout. Output ``(B, 2C, ceil(H/2), ceil(W/2))``; the last maps are kept in ``last_maps`` for heat-maps."""

    def __init__(self, channels: int, num_maps: int = 16, drop_rate: float = 0.5) -> None:
        super().__init__()
        self.attention = SoftAttention(channels, num_maps)
        self.pool = nn.MaxPool2d(2, ceil_mode=True)  # Keras MaxPooling2D(padding="same")
        self.drop = nn.Dropout(drop_rate)
        self.out_channels = 2 * channels
        self.last_maps: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        attended, maps = self.attention(x)
        self.last_maps = maps.detach()
        return self.drop(F.relu(torch.cat([self.pool(x), self.pool(attended)], dim=1)))


@ATTENTIONS.register("soft", help="soft attention (16 maps, γ, max-pool concat, ReLU, Dropout 0.5; Datta 2021)")
def soft_attention_block(channels: int) -> nn.Module:
    return SoftAttentionBlock(channels)


class AttentionBackbone(nn.Module):
    """A timm trunk truncated after ``stage`` (``-1``: its full feature extractor), an attention block, global
    average pooling. Behaves like a headless timm backbone: ``forward`` gives ``(B, num_features)``."""

    def __init__(self, trunk: nn.Module, block_builder: AttentionBuilder, stage: int = -1) -> None:
        super().__init__()
        stages = len(getattr(trunk, "feature_info", []) or [])
        if stage != -1 and not 0 <= stage < stages:
            raise ValueError(f"attention_stage must be -1 (the end) or 0..{stages - 1} for this backbone, got {stage}")
        self.stage = stage
        if stage == -1:
            channels = int(trunk.num_features)
        else:  # drop the blocks after the stage, as the study replaced the last blocks of InceptionResNetV2
            trunk.prune_intermediate_layers(indices=[stage], prune_head=True)
            channels = int(trunk.feature_info[stage]["num_chs"])
        self.trunk = trunk
        self.block = block_builder(channels)
        self.num_features = int(getattr(self.block, "out_channels", channels))
        self.pretrained_cfg = getattr(trunk, "pretrained_cfg", {})

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """The trunk's spatial features at the attention point, ``(B, C, H, W)``."""
        if self.stage == -1:
            return self.trunk.forward_features(x)
        return self.trunk.forward_intermediates(x, indices=[self.stage], intermediates_only=True, stop_early=True)[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(self.feature_map(x)).mean((2, 3))

    @torch.no_grad()
    def attention_maps(self, x: torch.Tensor) -> torch.Tensor:
        """Attention maps ``(B, K, h, w)`` for input images ``x`` (normalised model input)."""
        return self.block.attention.attention_maps(self.feature_map(x))


def create_attention_backbone(trunk: nn.Module, name: str, stage: int = -1) -> nn.Module:
    """Wrap ``trunk`` with the registered attention block ``name`` (``none`` returns the trunk unchanged)."""
    builder = ATTENTIONS.get(name)
    if builder is None:
        return trunk
    model = AttentionBackbone(trunk, builder, stage)
    logger.info("Attention %r after %s: %d features", name, "the last stage" if stage == -1 else f"stage {stage}",
                model.num_features)
    return model


def attention_heatmap(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Summed attention maps upsampled to the input size and scaled to [0, 1] per image: ``(B, H, W)``.

    ``model`` is a classifier whose backbone is an :class:`AttentionBackbone`; ``x`` its normalised input.
    """
    backbone = getattr(model, "backbone", model)
    if not isinstance(backbone, AttentionBackbone):
        raise NoAttentionError("this model has no attention block (train with model.attention=soft)")
    was_training = backbone.training
    backbone.eval()
    try:
        maps = backbone.attention_maps(x).sum(1, keepdim=True)
    finally:
        backbone.train(was_training)
    heat = F.interpolate(maps, size=x.shape[-2:], mode="bilinear", align_corners=False).squeeze(1)
    lo = heat.flatten(1).min(1).values.view(-1, 1, 1)
    hi = heat.flatten(1).max(1).values.view(-1, 1, 1)
    return (heat - lo) / (hi - lo).clamp_min(1e-12)
