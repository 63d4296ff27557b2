"""Smaller weight files for released models: half precision, or int8 weight-only quantisation.

``int8`` stores every convolution and linear weight (tensors of two or more dimensions) as a per-output-channel
symmetric ``torch.qint8`` tensor (:func:`torch.quantize_per_channel`); biases, batch-norm statistics and small
tensors stay in half precision. Activations are not quantised: a loaded model dequantises its weights once and runs
in float, so the only error is the weights' rounding (EfficientNet-Lite was designed to be int8-friendly).
:func:`dequantize_state` undoes either form for ``load_state_dict``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch

from lesionlab.registry import Registry

MIN_QUANTIZED_NUMEL = 64  # smaller tensors (e.g. a 1x1 gate) gain nothing from int8


def _half(v: torch.Tensor) -> torch.Tensor:
    return v.half() if v.is_floating_point() else v


def _int8_per_channel(v: torch.Tensor) -> torch.Tensor:
    if not v.is_floating_point() or v.dim() < 2 or v.numel() < MIN_QUANTIZED_NUMEL:
        return _half(v)
    w = v.float()
    scale = w.abs().amax(dim=tuple(range(1, w.dim()))).clamp_min(1e-12) / 127.0
    return torch.quantize_per_channel(w, scale.double(), torch.zeros(w.shape[0], dtype=torch.long), 0, torch.qint8)


WEIGHT_FORMATS: Registry[Callable[[torch.Tensor], torch.Tensor]] = Registry("weight format")
WEIGHT_FORMATS.add("fp16", _half, help="half precision (about half the size of float32; no measurable change)")
WEIGHT_FORMATS.add("int8", _int8_per_channel,
                   help="int8 weight-only, per output channel (about a quarter of float32; activations in float)")


def compress_state(state: Mapping[str, torch.Tensor], fmt: str) -> dict[str, torch.Tensor]:
    """``state`` with its tensors stored in ``fmt`` (a :data:`WEIGHT_FORMATS` name)."""
    convert = WEIGHT_FORMATS.get(fmt)
    return {k: convert(v) for k, v in state.items()}


def dequantize_state(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Quantised tensors back to float32; everything else unchanged (``load_state_dict`` casts half precision)."""
    return {k: v.dequantize() if v.is_quantized else v for k, v in state.items()}


__all__ = ["WEIGHT_FORMATS", "compress_state", "dequantize_state"]
