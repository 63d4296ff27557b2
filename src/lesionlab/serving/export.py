"""``lesionlab export``: a run's model as ONNX (dynamic batch) with its preprocessing JSON and card."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lesionlab.serving.model_loading import load_torch
from lesionlab.serving.onnx import DEFAULT_OPSET, export_onnx


def export_run(run: str | Path, out: str | Path | None = None, *, opset: int | None = None) -> dict[str, Any]:
    """Export a run directory (or ``model.pt``) to ``RUN/model.onnx`` (or ``out``) with its card."""
    run = Path(run)
    model_file = run / "model.pt" if run.is_dir() else run
    if not model_file.is_file():
        raise FileNotFoundError(f"{run} is not a LesionLab run directory or model file (no {model_file.name})")
    model, prep, card = load_torch(model_file)
    card_dict = {"name": card.name, "dataset": card.dataset, "metrics": card.metrics, "training": card.training,
                 "exported_from": str(model_file), "source_sha256": card.sha256}
    target = Path(out) if out else model_file.with_suffix(".onnx")
    return export_onnx(model, prep, target, card=card_dict, opset=opset or DEFAULT_OPSET)
