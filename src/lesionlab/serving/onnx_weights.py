"""Weight-only int8 ONNX files: every Conv / Gemm weight stored as int8 with one scale per output channel.

The graph gains one ``DequantizeLinear`` per weight (per-axis, zero point 0), so activations stay float32: the file
shrinks about 4x and the outputs match the float graph to within the weights' rounding. ONNX Runtime would keep the
``DequantizeLinear`` nodes and run them on every call (about 3x slower); :class:`lesionlab.serving.onnx.OnnxModule`
opens sessions with ``session.disable_quant_qdq`` so constant folding turns them into float weights once, at load.
This is the ONNX side of ``lesionlab release --weights int8``
(:mod:`lesionlab.models.compression`): a graph exported from an int8-stored PyTorch model re-quantizes to the same
int8 values, because batch-norm folding scales each output channel by one factor.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

WEIGHT_INPUT = {"Conv": 1, "Gemm": 1}  # op type -> input index of its weight


def _quantize(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    peak = np.abs(w.reshape(len(w), -1)).max(axis=1)
    scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
    q = np.clip(np.rint(w / scale.reshape(-1, *([1] * (w.ndim - 1)))), -127, 127).astype(np.int8)
    return q, scale


def _output_axis(node) -> int:
    """The axis of the output channels: 0 for Conv and for Gemm with ``transB=1``, 1 for Gemm's default ``transB=0``."""
    if node.op_type == "Gemm":
        return 0 if any(a.name == "transB" and a.i == 1 for a in node.attribute) else 1
    return 0


def int8_weights(path: str | Path, out: str | Path | None = None) -> dict[str, float]:
    """Rewrite the ONNX file ``path`` (to ``out``, default in place) with int8 Conv/Gemm weights; returns the sizes
    in MB before and after and how many weights were stored as int8."""
    import onnx
    from onnx import helper, numpy_helper

    path = Path(path)
    out = Path(out) if out else path
    before = path.stat().st_size / 2**20
    model = onnx.load(str(path))
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    uses: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    if opset < 13:
        raise ValueError(f"{path}: opset {opset} has no per-axis DequantizeLinear (needs opset >= 13); re-export it")
    graph_inputs = {i.name for i in graph.input}
    done = 0
    new_nodes = []
    for node in graph.node:
        index = WEIGHT_INPUT.get(node.op_type)
        name = node.input[index] if index is not None and len(node.input) > index else None
        init = inits.get(name) if name else None
        if (init is not None and uses[name] == 1 and name not in graph_inputs
                and init.data_type == onnx.TensorProto.FLOAT and len(init.dims) >= 2):
            axis = _output_axis(node)
            w = numpy_helper.to_array(init)
            q, scale = _quantize(np.moveaxis(w, axis, 0))
            q = np.ascontiguousarray(np.moveaxis(q, 0, axis))
            graph.initializer.remove(init)
            graph.initializer.extend([numpy_helper.from_array(q, f"{name}_int8"),
                                      numpy_helper.from_array(scale, f"{name}_scale"),
                                      numpy_helper.from_array(np.zeros(len(scale), np.int8), f"{name}_zero")])
            new_nodes.append(helper.make_node("DequantizeLinear", [f"{name}_int8", f"{name}_scale", f"{name}_zero"],
                                              [name], name=f"{name}_dequantize", axis=axis))
            done += 1
    nodes = [*new_nodes, *graph.node]  # the dequantized weights first: the graph stays topologically sorted
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(model)
    onnx.save(model, str(out))
    return {"mb_before": round(before, 2), "mb_after": round(out.stat().st_size / 2**20, 2), "int8_weights": done}


__all__ = ["int8_weights"]
