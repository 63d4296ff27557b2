"""MixStyle (Zhou et al., "Domain Generalization with MixStyle", ICLR 2021): a domain-generalisation regulariser.

A CNN's early feature statistics (per-channel mean and standard deviation over the image) carry an image's *style*:
camera, illumination, colour chain — what differs between clinics. During training, with probability ``p`` per
batch, MixStyle re-normalises each image's early feature maps with statistics mixed with those of another image of
the batch (weight drawn from Beta(alpha, alpha)), so the later layers see new styles of the same content. No
parameters, nothing at inference: a trained model's checkpoint is the same as without it.

:func:`attach_mixstyle` hooks it onto the first three backbone stages at strides 4, 8 and 16 (ResNet's layer1-3, as
in the paper; the corresponding blocks of an EfficientNet), read from timm's ``feature_info``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class MixStyle(nn.Module):
    """Mix instance-level feature statistics within a batch (training mode only)."""

    def __init__(self, p: float = 0.5, alpha: float = 0.1, eps: float = 1e-6) -> None:
        super().__init__()
        self.p, self.alpha, self.eps = float(p), float(alpha), float(eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or x.shape[0] < 2 or float(torch.rand(())) >= self.p:
            return x
        mu = x.mean(dim=(2, 3), keepdim=True).detach()
        sigma = (x.var(dim=(2, 3), keepdim=True) + self.eps).sqrt().detach()
        weight = torch.distributions.Beta(self.alpha, self.alpha).sample((x.shape[0], 1, 1, 1)).to(x)
        perm = torch.randperm(x.shape[0], device=x.device)
        mixed_mu = weight * mu + (1 - weight) * mu[perm]
        mixed_sigma = weight * sigma + (1 - weight) * sigma[perm]
        return (x - mu) / sigma * mixed_sigma + mixed_mu


def mixstyle_stages(trunk: nn.Module, count: int = 3) -> list[str]:
    """Names of the first ``count`` timm feature stages at stride >= 4 (the stem is left alone)."""
    info = getattr(trunk, "feature_info", None)
    if not info:
        raise ValueError(f"{type(trunk).__name__} has no timm feature_info: MixStyle cannot find its stages")
    entries = [info[i] for i in range(len(info))]
    return [e["module"] for e in entries if int(e["reduction"]) >= 4][:count]


def attach_mixstyle(backbone: nn.Module, mixstyle: MixStyle) -> list[str]:
    """Apply ``mixstyle`` to the outputs of the backbone's early stages (forward hooks); returns their names."""
    trunk = getattr(backbone, "trunk", backbone)
    names = mixstyle_stages(trunk)
    modules = dict(trunk.named_modules())

    def hook(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> torch.Tensor:
        return mixstyle(output)

    for name in names:
        modules[name].register_forward_hook(hook)
    return names
