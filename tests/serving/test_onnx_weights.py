"""int8 ONNX weights: Conv and Gemm (either transB) keep their outputs; old opsets are refused with a reason."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from lesionlab.serving.onnx_weights import int8_weights  # noqa: E402


def _graph(tmp_path: Path, trans_b: int | None, opset: int = 18) -> Path:
    rng = np.random.default_rng(0)
    conv_w = rng.normal(size=(4, 3, 3, 3)).astype(np.float32) * np.array([1, 10, 0.1, 3], np.float32)[:, None, None,
                                                                                                      None]
    gemm_w = rng.normal(size=(5, 16) if trans_b else (16, 5)).astype(np.float32)
    gemm_w *= np.array([1, 20, 0.05, 2, 7], np.float32)[:, None] if trans_b else np.array([1, 20, 0.05, 2, 7],
                                                                                            np.float32)
    attrs = {} if trans_b is None else {"transB": trans_b}
    nodes = [helper.make_node("Conv", ["x", "conv_w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("GlobalAveragePool", ["c"], ["g"]),
             helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("Concat", ["f", "f", "f", "f"], ["f16"], axis=1),
             helper.make_node("Gemm", ["f16", "gemm_w"], ["y"], **attrs)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 5])],
                              [numpy_helper.from_array(conv_w, "conv_w"), numpy_helper.from_array(gemm_w, "gemm_w")])
    path = tmp_path / f"m{trans_b}.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]), str(path))
    return path


def _run(path: Path, x: np.ndarray) -> np.ndarray:
    opts = ort.SessionOptions()
    opts.add_session_config_entry("session.disable_quant_qdq", "1")
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


@pytest.mark.parametrize("trans_b", [None, 0, 1])
def test_int8_weights_keep_each_output_channel(tmp_path: Path, trans_b: int | None) -> None:
    path = _graph(tmp_path, trans_b)
    x = np.random.default_rng(1).normal(size=(2, 3, 8, 8)).astype(np.float32)
    before = _run(path, x)
    summary = int8_weights(path, tmp_path / "q.onnx")
    assert summary["int8_weights"] == 2
    after = _run(tmp_path / "q.onnx", x)
    # every output column (channels scaled from 0.05 to 20) within 5 % of its own magnitude: per-channel scales on
    # the right axis; a scale shared across channels or taken along the wrong axis breaks the small ones
    rel = np.abs(after - before).max(axis=0) / np.abs(before).max(axis=0)
    assert (rel < 0.05).all(), rel
    stored = {i.name: i.data_type for i in onnx.load(str(tmp_path / "q.onnx")).graph.initializer}
    assert stored["conv_w_int8"] == stored["gemm_w_int8"] == TensorProto.INT8


def test_old_opsets_are_refused_with_the_reason(tmp_path: Path) -> None:
    path = _graph(tmp_path, 1, opset=11)
    with pytest.raises(ValueError, match="per-axis DequantizeLinear"):
        int8_weights(path)
