"""Smaller weight files for released models: half precision, or int8 weight-only quantisation.

``int8`` stores every convolution and linear weight (tensors of two or more dimensions) as plain ``torch.int8``
values with one symmetric scale per output channel, kept under ``<key>@int8_scale``; biases, batch-norm statistics and
small tensors stay in half precision. Activations are not quantised: a loaded model dequantises its weights once and
runs in float, so the only error is the weights' rounding (EfficientNet-Lite was designed to be int8-friendly).
Plain int8 tensors are used rather than ``torch.quantize_per_channel``, which PyTorch deprecates.
:func:`dequantize_state` undoes either form for ``load_state_dict``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch

from lesionlab.registry import Registry

MIN_QUANTIZED_NUMEL = 64  # smaller tensors (e.g. a 1x1 gate) gain nothing from int8
SCALE_SUFFIX = "@int8_scale"


def _half(v: torch.Tensor) -> torch.Tensor:
    return v.half() if v.is_floating_point() else v


def _int8_per_channel(key: str, v: torch.Tensor) -> dict[str, torch.Tensor]:
    if not v.is_floating_point() or v.dim() < 2 or v.numel() < MIN_QUANTIZED_NUMEL:
        return {key: _half(v)}
    w = v.float()
    scale = w.abs().amax(dim=tuple(range(1, w.dim())), keepdim=True).clamp_min(1e-12) / 127.0
    return {key: torch.round(w / scale).clamp(-127, 127).to(torch.int8), key + SCALE_SUFFIX: scale.flatten()}


WEIGHT_FORMATS: Registry[Callable[[str, torch.Tensor], dict[str, torch.Tensor]]] = Registry("weight format")
WEIGHT_FORMATS.add("fp16", lambda key, v: {key: _half(v)},
                   help="half precision (about half the size of float32; no measurable change)")
WEIGHT_FORMATS.add("int8", _int8_per_channel,
                   help="int8 weight-only, per output channel (about a quarter of float32; activations in float)")


def compress_state(state: Mapping[str, torch.Tensor], fmt: str) -> dict[str, torch.Tensor]:
    """``state`` with its tensors stored in ``fmt`` (a :data:`WEIGHT_FORMATS` name)."""
    convert = WEIGHT_FORMATS.get(fmt)
    out: dict[str, torch.Tensor] = {}
    for k, v in state.items():
        out.update(convert(k, v))
    return out


def dequantize_state(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """int8 weights times their scales, in float32; everything else unchanged (``load_state_dict`` casts fp16)."""
    out = {}
    for k, v in state.items():
        if k.endswith(SCALE_SUFFIX):
            continue
        scale = state.get(k + SCALE_SUFFIX)
        out[k] = v if scale is None else v.float() * scale.float().view(-1, *([1] * (v.dim() - 1)))
    return out


__all__ = ["SCALE_SUFFIX", "WEIGHT_FORMATS", "compress_state", "dequantize_state"]
