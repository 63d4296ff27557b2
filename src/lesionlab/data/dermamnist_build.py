"""Rebuild DermaMNIST from the HAM10000 images as "DermaMNIST-Corrected": MedMNIST's array layout, a lesion-disjoint
70/10/20 split and a sidecar CSV of HAM image and lesion ids (read by the ``dermamnist`` loader)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from lesionlab.config import DataConfig
from lesionlab.data.cache import build_or_load
from lesionlab.data.datasets import load_dataset
from lesionlab.data.dermamnist import CORRECTED_SPLIT_CSV, dermamnist_filename
from lesionlab.data.info import get_info
from lesionlab.data.roots import resolve_cache_dir, resolve_data_root
from lesionlab.data.splits import SPLITS, lesion_disjoint_split
from lesionlab.data.table import DatasetError

logger = logging.getLogger(__name__)


def build_dermamnist(
    root: str | Path | None,
    *,
    sizes: tuple[int, ...] = (28, 64, 128),
    image_dir: str | Path | None = None,
    out_dir: str | Path | None = None,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> list[Path]:
    """Write DermaMNIST-Corrected arrays: HAM10000 resized (``full`` crop), split lesion-disjoint 70/10/20.

    Each ``dermamnist_corrected_<size>.npz`` has MedMNIST's layout (``{train,val,test}_images`` uint8
    ``(N, size, size, 3)`` and ``{...}_labels`` uint8 ``(N, 1)``, labels in MedMNIST's order), so code written
    for DermaMNIST runs unchanged. ``dermamnist_corrected_split.csv`` lists image_id, lesion_id, label and split
    in array order. Pixels go through the shared image cache, so each image is decoded once per size and later
    training runs with ``crop=full`` at these sizes reuse them. Returns the written files.
    """
    root = resolve_data_root(root)
    if not sizes or any(int(s) < 1 for s in sizes):
        raise DatasetError(f"build-dermamnist: sizes must be positive integers, got {sizes}")
    dataset = load_dataset(DataConfig(dataset="ham10000", root=str(root),
                                      image_dir=str(image_dir) if image_dir else None))
    table = dataset.table
    split = lesion_disjoint_split(table, val=0.1, test=0.2, seed=seed).to_numpy()
    rows = {s: np.flatnonzero(split == s) for s in SPLITS}
    logger.info("DermaMNIST-Corrected split (lesion-disjoint): %s",
                ", ".join(f"{s} {len(r)}" for s, r in rows.items()))
    labels = dataset.targets().astype(np.uint8)
    out = Path(out_dir).expanduser() if out_dir else root / get_info("dermamnist").folder
    out.mkdir(parents=True, exist_ok=True)
    cache = resolve_cache_dir(cache_dir)
    written = []
    for size in tqdm([int(s) for s in sizes], desc="DermaMNIST-Corrected", unit="size", disable=not progress):
        arrays = build_or_load(table, dataset=dataset.name, crop="full", size=size, cache_dir=cache, progress=progress)
        payload: dict[str, Any] = {}  # np.savez_compressed(**payload)
        for s, idx in rows.items():
            payload[f"{s}_images"] = np.ascontiguousarray(arrays.images[idx])
            payload[f"{s}_labels"] = labels[idx].reshape(-1, 1)
        path = out / dermamnist_filename(size, "corrected")
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **payload)
        tmp.replace(path)
        written.append(path)
    order = np.concatenate(list(rows.values()))
    csv_path = out / CORRECTED_SPLIT_CSV
    pd.DataFrame({
        "image_id": table["image_id"].to_numpy()[order], "lesion_id": table["lesion_id"].to_numpy()[order],
        "label": table["label"].to_numpy()[order], "split": split[order],
    }).to_csv(csv_path, index=False)
    written.append(csv_path)
    return written
