"""The dataset-loader registry and what every loader shares: the request it gets and how it reads tables and folders.

Loader modules (``datasets``, ``isic_challenges``, ``ph2``, ...) register into :data:`DATASETS`; ``load_dataset`` in
:mod:`lesionlab.data.datasets` imports them all and dispatches by name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from lesionlab.config import DataConfig
from lesionlab.data.table import DatasetError, LesionDataset
from lesionlab.registry import Registry


@dataclass(frozen=True)
class DatasetRequest:
    """What a loader gets: where to look and how strict to be."""

    root: Path
    image_dir: Path | None = None
    csv: Path | None = None
    skip_missing: bool = False
    options: dict[str, Any] = field(default_factory=dict)
    #: load another dataset (for loaders built from others, e.g. ``merged``): ``lesionlab.data.datasets.load_dataset``
    load: Callable[[DataConfig], LesionDataset] | None = None


Loader = Callable[[DatasetRequest], LesionDataset]
DATASETS: Registry[Loader] = Registry("dataset")


def read_table(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise DatasetError(f"Table not found: {path}")
    sep = "\t" if path.suffix.lower() in (".tab", ".tsv") else ","
    try:
        return pd.read_csv(path, sep=sep)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise DatasetError(f"Cannot parse {path}: {exc}") from exc


def dataset_dir(req: DatasetRequest, folder: str) -> Path:
    sub = req.root / folder
    return sub if sub.is_dir() else req.root


def image_folders(req: DatasetRequest, base: Path, candidates: tuple[str, ...]) -> list[Path]:
    if req.image_dir is not None:
        if not req.image_dir.is_dir():
            raise DatasetError(f"Image folder not found: {req.image_dir}")
        return [req.image_dir]
    present = [base / c for c in candidates if (base / c).is_dir()]
    official = [p for p in present if p.name.startswith("HAM10000_images_part")]
    return official or present[:1]


def first_existing(base: Path, names: tuple[str, ...], what: str, manual: str) -> Path:
    for n in names:
        if (base / n).is_file():
            return base / n
    raise DatasetError(f"{what} not found in {base} (looked for {', '.join(names)}).", manual)
