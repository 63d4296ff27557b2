"""ONNX export (dynamic batch) with the preprocessing JSON beside it, and an ONNX Runtime module for inference.

The exported graph is the classifier alone: normalised float32 ``(N, 3, H, W)`` in, logits ``(N, C)`` out. Crop,
resize, normalisation, temperature, TTA and thresholds are described in ``<name>.preprocessing.json`` so a
non-Python client can reproduce them. A second output, ``features``, holds the pooled backbone features the OOD
detector (stored in the JSON, arrays as base64) scores. :class:`OnnxModule` lets the Python predictor run the graph
through the same code path as the PyTorch model (:func:`lesionlab.inference.predict.predict_probs`).
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lesionlab.errors import LesionLabError
from lesionlab.models.checkpoint import Preprocessing

logger = logging.getLogger(__name__)

FORMAT = "lesionlab-onnx/1"
INPUT_NAME, METADATA_NAME, OUTPUT_NAME, FEATURES_NAME = "input", "metadata", "logits", "features"
DEFAULT_OPSET = 18


class _LogitsAndFeatures(nn.Module):
    """The exported graph: ``(logits, features)`` so ONNX Runtime can feed the OOD detector."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, meta: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.model.features(x)
        return self.model.classify_features(features, meta), features


class OnnxExportError(LesionLabError, RuntimeError):
    """Export is not possible (missing packages) or the exported graph disagrees with the PyTorch model."""


def preprocessing_path(onnx_path: str | Path) -> Path:
    """``model.onnx`` → ``model.preprocessing.json`` (same folder)."""
    p = Path(onnx_path)
    return p.with_name(p.stem + ".preprocessing.json")


def _require(module: str) -> Any:
    try:
        return __import__(module)
    except ImportError as exc:
        raise OnnxExportError(f"{module} is not installed; install the serving extra: pip install 'lesionlab[serve]'"
                              ) from exc


@contextlib.contextmanager
def _quiet(*names: str) -> Iterator[None]:
    """The exporter's optimisation passes log every step at INFO; keep them to warnings."""
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def export_onnx(model: nn.Module, prep: Preprocessing, out: str | Path, *, card: dict[str, Any] | None = None,
                opset: int = DEFAULT_OPSET, check_batch: int = 3, atol: float = 1e-4) -> dict[str, Any]:
    """Write ``out`` (ONNX, dynamic batch axis) and its preprocessing JSON; verify it against PyTorch.

    Returns a summary (paths, opset, the measured max |Δprob| on random inputs). Raises
    :class:`OnnxExportError` when ONNX Runtime disagrees with PyTorch by more than ``atol``.
    """
    _require("onnx")
    _require("onnxscript")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval().cpu().to(memory_format=torch.contiguous_format)
    size = prep.image_size
    spec = getattr(model, "metadata_spec", None)  # metadata-fusion models take a second input
    example: tuple[torch.Tensor, ...] = (torch.randn(2, 3, size, size),)
    names = [INPUT_NAME]
    if spec is not None:
        example += (torch.from_numpy(spec.encode([None, None])),)
        names.append(METADATA_NAME)
    batch = torch.export.Dim("batch", min=1, max=4096)
    with _quiet("onnxscript", "onnx_ir", "torch.onnx", "torch.export"):
        program = torch.onnx.export(_LogitsAndFeatures(model), example, dynamo=True, input_names=names,
                                    output_names=[OUTPUT_NAME, FEATURES_NAME],
                                    dynamic_shapes=tuple({0: batch} for _ in example), opset_version=opset,
                                    verbose=False)
    program.save(str(out))
    meta = {"format": FORMAT, "opset": opset, "input": {"name": INPUT_NAME, "shape": ["batch", 3, size, size],
            "dtype": "float32", "layout": "NCHW, RGB scaled to [0, 1] then (x - mean) / std"},
            "output": {"name": OUTPUT_NAME, "shape": ["batch", len(prep.class_names)],
                       "meaning": "logits; probabilities = softmax(logits / temperature), averaged over the TTA views"},
            "features": {"name": FEATURES_NAME, "shape": ["batch", "F"],
                         "meaning": "pooled backbone features, scored by the OOD detector under 'ood'"},
            "preprocessing": asdict(prep), "card": card or {},
            "ood": detector.to_dict("base64") if (detector := getattr(model, "ood_detector", None)) else None,
            "metadata_spec": spec.to_dict() if spec is not None else None}
    preprocessing_path(out).write_text(json.dumps(meta, indent=2))
    diff = check_parity(model, OnnxModule(out, metadata_spec=spec), torch.randn(check_batch, 3, size, size))
    if diff > atol:
        raise OnnxExportError(f"ONNX Runtime and PyTorch disagree: max |Δprob| = {diff:.2e} > {atol:g}")
    logger.info("Exported %s (opset %d); max |Δprob| vs PyTorch on random input: %.2e", out, opset, diff)
    return {"onnx": str(out), "preprocessing": str(preprocessing_path(out)), "opset": opset,
            "max_abs_prob_diff": diff}


@torch.inference_mode()
def check_parity(reference: nn.Module, candidate: nn.Module, x: torch.Tensor) -> float:
    """Max |softmax(reference(x)) - softmax(candidate(x))|."""
    a = reference.eval()(x).float().softmax(-1)
    b = candidate(x).float().softmax(-1)
    return float((a - b).abs().max())


class OnnxModule(nn.Module):
    """An ONNX Runtime session behind the ``nn.Module`` call interface (CPU; no gradients)."""

    def __init__(self, path: str | Path, threads: int = 0, metadata_spec: Any = None) -> None:
        super().__init__()
        self.metadata_spec = metadata_spec  # set for metadata-fusion models (second input "metadata")
        ort = _require("onnxruntime")
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # int8-stored weights (serving.onnx_weights): fold their DequantizeLinear nodes into float weights once at
        # load time instead of keeping them as QDQ pairs that re-run on every call (about 3x faster on CPU)
        opts.add_session_config_entry("session.disable_quant_qdq", "1")
        if threads:
            opts.intra_op_num_threads = threads
        self.path = Path(path)
        self.session = ort.InferenceSession(str(self.path), sess_options=opts, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]

    def forward(self, x: torch.Tensor, meta: torch.Tensor | None = None) -> torch.Tensor:
        (logits,) = self.session.run([self.output_names[0]], self._feeds(x, meta))
        return torch.from_numpy(logits)

    def forward_with_features(self, x: torch.Tensor, meta: torch.Tensor | None = None
                              ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(features, logits)``; exports older than the features output give ``(N, 0)`` features."""
        if FEATURES_NAME not in self.output_names:
            logits = self.forward(x, meta)
            return torch.zeros(len(logits), 0), logits
        logits, features = self.session.run([self.output_names[0], FEATURES_NAME], self._feeds(x, meta))
        return torch.from_numpy(features), torch.from_numpy(logits)

    def _feeds(self, x: torch.Tensor, meta: torch.Tensor | None) -> dict[str, np.ndarray]:
        feeds = {self.input_name: np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)}
        if self.metadata_spec is not None:
            missing = np.broadcast_to(self.metadata_spec.missing_vector(), (len(x), self.metadata_spec.dim))
            feeds[METADATA_NAME] = np.ascontiguousarray(missing if meta is None else meta.detach().cpu().numpy(),
                                                        dtype=np.float32)
        elif meta is not None:
            raise ValueError("this ONNX model was exported without metadata; pass meta=None")
        return feeds


def load_onnx(path: str | Path) -> tuple[OnnxModule, Preprocessing, dict[str, Any]]:
    """The ONNX Runtime module, its preprocessing and its card (from the JSON beside the file)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX file not found: {path}")
    meta_path = preprocessing_path(path)
    if not meta_path.is_file():
        raise FileNotFoundError(f"{path} has no preprocessing file beside it (expected {meta_path}); "
                                "re-export it with 'lesionlab export RUN --format onnx'")
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != FORMAT:
        raise ValueError(f"{meta_path} is not a LesionLab ONNX preprocessing file (expected format {FORMAT})")
    prep_dict = dict(meta["preprocessing"])
    for key in ("mean", "std", "class_names"):
        prep_dict[key] = tuple(prep_dict[key])
    known = set(Preprocessing.__dataclass_fields__)
    prep = Preprocessing(**{k: v for k, v in prep_dict.items() if k in known})
    spec = None
    if meta.get("metadata_spec"):
        from lesionlab.models.metadata import MetadataSpec

        spec = MetadataSpec.from_dict(meta["metadata_spec"])
    return OnnxModule(path, metadata_spec=spec), prep, {**dict(meta.get("card") or {}), "ood": meta.get("ood")}
