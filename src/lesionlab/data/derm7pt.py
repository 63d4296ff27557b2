"""Derm7pt: one dermoscopic and one clinical image per case, 20 diagnoses and the 7-point checklist (``meta.csv``).

``options.image`` chooses the image a row uses: ``derm`` (dermoscopic, default) or ``clinic``; the other stays in
``derm_path`` / ``clinic_path``. The distribution's ``train/valid/test_indexes.csv`` give ``official_split``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from lesionlab.data.info import get_info
from lesionlab.data.loaders import DATASETS, DatasetRequest, dataset_dir, read_table
from lesionlab.data.table import DatasetError, LesionDataset, attach_paths, normalise_table
from lesionlab.data.taxonomy import DERM7PT_DX

#: The 7-point checklist criteria (and its score), kept as metadata columns.
CHECKLIST = ("seven_point_score", "pigment_network", "streaks", "pigmentation", "regression_structures",
             "dots_and_globules", "blue_whitish_veil", "vascular_structures")
IMAGE_KINDS = {"derm": "dermoscopic", "clinic": "clinical"}
_INDEX_FILES = {"train": "train_indexes.csv", "val": "valid_indexes.csv", "test": "test_indexes.csv"}


def _official_split(meta_dir: Path, n: int) -> pd.Series | None:
    if not all((meta_dir / f).is_file() for f in _INDEX_FILES.values()):
        return None
    split = pd.Series([None] * n, dtype=object)
    for name, file in _INDEX_FILES.items():
        idx = read_table(meta_dir / file)["indexes"].astype(int)
        if ((idx < 0) | (idx >= n)).any():
            raise DatasetError(f"{meta_dir / file}: indexes outside 0..{n - 1}")
        split.iloc[idx.to_numpy()] = name
    return split


@DATASETS.register("derm7pt", help="Derm7pt: meta/meta.csv + images/ (options: image=derm|clinic); 7-point "
                   "checklist kept as metadata; official_split from the index files")
def load_derm7pt(req: DatasetRequest) -> LesionDataset:
    info = get_info("derm7pt")
    base = dataset_dir(req, info.folder)
    kind = str(req.options.get("image", "derm"))
    if kind not in IMAGE_KINDS:
        raise DatasetError(f"derm7pt: options.image must be one of {sorted(IMAGE_KINDS)}, got {kind!r}")
    path = req.csv or next((p for p in (base / "meta" / "meta.csv", base / "meta.csv") if p.is_file()), None)
    if path is None:
        raise DatasetError(f"Derm7pt meta/meta.csv not found in {base}. "
                           + info.manual.replace("<root>", str(req.root)))
    meta = read_table(Path(path))
    need = {"case_num", "diagnosis", "derm", "clinic"}
    if not need <= set(meta.columns):
        raise DatasetError(f"{path} lacks columns {sorted(need - set(meta.columns))}")
    images = req.image_dir or base / "images"
    dx = meta["diagnosis"].astype(str).str.strip()
    table = pd.DataFrame({
        "image_id": "derm7pt_" + meta["case_num"].astype(str) + "_" + kind,
        "label": dx, "diagnosis": dx, "lesion_id": "derm7pt_" + meta["case_num"].astype(str),
        "sex": meta.get("sex"), "site": meta.get("location"),
        "derm_path": meta["derm"].map(lambda r: str(images / str(r))),
        "clinic_path": meta["clinic"].map(lambda r: str(images / str(r))),
        "modality": IMAGE_KINDS[kind], "melanoma": dx.str.lower().str.startswith("melanoma"),
        **{c: meta[c] for c in (*CHECKLIST, "level_of_diagnostic_difficulty", "elevation", "management")
           if c in meta.columns},
    })
    split = _official_split(Path(path).parent, len(meta))
    if split is not None:
        table["official_split"] = split.to_numpy()
    table = normalise_table(table, DERM7PT_DX, "derm7pt")
    index = {i: Path(p) for i, p in zip(table["image_id"], table[f"{kind}_path"], strict=True) if Path(p).is_file()}
    return LesionDataset("derm7pt", DERM7PT_DX, attach_paths(table, index, "derm7pt", req.skip_missing))
