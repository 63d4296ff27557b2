"""PH2 (Hospital Pedro Hispano): 200 dermoscopic images, common / atypical nevus or melanoma, with lesion masks.

Two layouts are read from ``<root>/ph2/``:

- the official distribution: ``PH2Dataset/PH2_dataset.txt`` (a ``||``-delimited table, or its tab-separated export) and
  ``PH2Dataset/PH2 Dataset images/IMDxxx/IMDxxx_Dermoscopic_Image/IMDxxx.bmp`` with the lesion mask in
  ``IMDxxx_lesion/IMDxxx_lesion.bmp``;
- the half-resolution copy: ``PH2_labels.csv`` + ``images_half/IMDxxx.jpg`` + ``masks_half/IMDxxx_lesion.png``.

Labels are HAM7 (both nevus kinds → ``nv``, melanoma → ``mel``), so ISIC-8 and triage follow from the taxonomy maps;
the fine diagnosis stays in the ``diagnosis`` column and the mask file in ``mask_path`` (for CAM-in-lesion).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pandas as pd

from lesionlab.data.info import get_info
from lesionlab.data.loaders import DATASETS, DatasetRequest, dataset_dir, read_table
from lesionlab.data.table import DatasetError, LesionDataset, attach_paths, index_images, normalise_table
from lesionlab.data.taxonomy import HAM7

logger = logging.getLogger(__name__)

#: The distribution's "Clinical Diagnosis" codes.
PH2_CODES = {0: "common_nevus", 1: "atypical_nevus", 2: "melanoma"}
#: Fine PH2 diagnosis → HAM7 class.
PH2_TO_HAM7 = {"common_nevus": "nv", "atypical_nevus": "nv", "melanoma": "mel"}
OFFICIAL_FOLDERS = ("PH2Dataset", "PH2_Dataset", ".")
IMAGE_FOLDERS = ("PH2 Dataset images", "PH2_Dataset_images", "PH2 Dataset Images")
HALF_MASKS = "masks_half"
_IMAGE_ID = re.compile(r"IMD\d+")


def parse_ph2_txt(path: Path) -> pd.DataFrame:
    """``PH2_dataset.txt`` → ``image_id, clinical_diagnosis_code, diagnosis`` (+ histological diagnosis, ABCD columns).

    The distribution's file is a ``||``/``|``-delimited table followed by legends; a tab-separated export (as in some
    copies) has the same header names. Only rows whose first cell is an ``IMDxxx`` id are data.
    """
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        raise DatasetError(f"Cannot read {path}: {exc}") from exc
    header_at = next((i for i, line in enumerate(lines) if "Name" in line and "Clinical Diagnosis" in line), None)
    if header_at is None:
        raise DatasetError(f"{path}: no header line with 'Name' and 'Clinical Diagnosis'; is this PH2_dataset.txt?")

    def cells(line: str) -> list[str]:
        if "|" in lines[header_at]:
            return [c.strip() for c in re.split(r"\|\|?", line.strip().strip("|"))]
        return [c.strip() for c in line.rstrip("\r").split("\t")]

    header = cells(lines[header_at])
    rows = []
    for line in lines[header_at + 1:]:
        values = cells(line)
        if values and _IMAGE_ID.fullmatch(values[0]):
            rows.append(dict(zip(header, values + [""] * (len(header) - len(values)), strict=False)))
    if not rows:
        raise DatasetError(f"{path}: no IMDxxx rows under the header")
    table = pd.DataFrame(rows).rename(columns={"Name": "image_id", "Clinical Diagnosis": "clinical_diagnosis_code",
                                               "Histological Diagnosis": "histological_diagnosis"})
    codes = pd.to_numeric(table["clinical_diagnosis_code"], errors="coerce")
    bad = table.loc[~codes.isin(list(PH2_CODES)), "image_id"].tolist()
    if bad:
        raise DatasetError(f"{path}: Clinical Diagnosis must be 0, 1 or 2; bad rows {bad[:5]}")
    table["clinical_diagnosis_code"] = codes.astype(int)
    table["diagnosis"] = table["clinical_diagnosis_code"].map(PH2_CODES)
    return table


def _labels_csv(path: Path) -> pd.DataFrame:
    table = read_table(path)
    need = {"image_id", "diagnosis"}
    if not need <= set(table.columns):
        raise DatasetError(f"{path} lacks columns {sorted(need - set(table.columns))}")
    bad = sorted(set(table["diagnosis"].astype(str)) - set(PH2_TO_HAM7))
    if bad:
        raise DatasetError(f"{path}: unknown PH2 diagnoses {bad}; expected {sorted(PH2_TO_HAM7)}")
    return table.assign(image_id=table["image_id"].astype(str))


def _official_dir(base: Path) -> Path | None:
    """The folder holding the official ``PH2 Dataset images/`` (``base`` itself or ``base/PH2Dataset``)."""
    for sub in OFFICIAL_FOLDERS:
        if any((base / sub / name).is_dir() for name in IMAGE_FOLDERS):
            return (base / sub).resolve()
    return None


def _official_files(distribution: Path) -> tuple[dict[str, Path], dict[str, Path]]:
    """Image and lesion-mask files of the official one-folder-per-image layout."""
    folder = next(distribution / n for n in IMAGE_FOLDERS if (distribution / n).is_dir())
    images, masks = {}, {}
    for case in sorted(p for p in folder.iterdir() if p.is_dir() and _IMAGE_ID.fullmatch(p.name)):
        image = index_images([case / f"{case.name}_Dermoscopic_Image"]).get(case.name)
        mask = index_images([case / f"{case.name}_lesion"]).get(f"{case.name}_lesion")
        if image is not None:
            images[case.name] = image
        if mask is not None:
            masks[case.name] = mask
    return images, masks


def _check_agreement(labels: pd.DataFrame, txt: pd.DataFrame, where: Path) -> None:
    both = labels.merge(txt[["image_id", "diagnosis"]], on="image_id", suffixes=("", "_txt"))
    differ = both.loc[both["diagnosis"] != both["diagnosis_txt"], "image_id"].tolist()
    if differ:
        raise DatasetError(f"{where}: PH2_labels.csv and PH2_dataset.txt disagree on {differ[:5]}")


@DATASETS.register("ph2", help="PH2: official distribution (PH2_dataset.txt + per-image BMP folders) or the "
                   "half-resolution copy (PH2_labels.csv, images_half/, masks_half/); nevi -> nv, melanoma -> mel")
def load_ph2(req: DatasetRequest) -> LesionDataset:
    info = get_info("ph2")
    base = dataset_dir(req, info.folder)
    distribution = _official_dir(base)
    txt_path = next((p for p in ((distribution or base) / "PH2_dataset.txt", base / "PH2_dataset.txt") if p.is_file()),
                    None)
    csv_path = req.csv or (base / "PH2_labels.csv" if (base / "PH2_labels.csv").is_file() else None)
    if csv_path is None and txt_path is None:
        raise DatasetError(f"PH2 labels not found in {base} (looked for PH2_labels.csv and PH2_dataset.txt). "
                           + info.manual.replace("<root>", str(req.root)))
    labels = _labels_csv(Path(csv_path)) if csv_path is not None else parse_ph2_txt(txt_path)
    if csv_path is not None and txt_path is not None:
        _check_agreement(labels, parse_ph2_txt(txt_path), base)
    masks: dict[str, Path]
    if req.image_dir is not None:
        if not req.image_dir.is_dir():
            raise DatasetError(f"Image folder not found: {req.image_dir}")
        images, masks = index_images([req.image_dir]), {}
    elif distribution is not None and not (base / "images_half").is_dir():
        images, masks = _official_files(distribution)
    else:
        images = index_images([base / f for f in info.image_folders])
        masks = {k.removesuffix("_lesion"): v for k, v in index_images([base / HALF_MASKS]).items()}
    if not images:
        raise DatasetError(f"No PH2 images under {base}. " + info.manual.replace("<root>", str(req.root)))
    table = labels.assign(
        label=labels["diagnosis"].map(PH2_TO_HAM7),
        lesion_id=labels["image_id"],  # one image per lesion in PH2
        mask_path=labels["image_id"].map(lambda i: str(masks[i]) if i in masks else None),
        modality="dermoscopic",
    )
    if table["mask_path"].isna().any():
        logger.warning("ph2: %d of %d images have no lesion mask", int(table["mask_path"].isna().sum()), len(table))
    table = normalise_table(table, HAM7, "ph2")
    return LesionDataset("ph2", HAM7, attach_paths(table, images, "ph2", req.skip_missing))
