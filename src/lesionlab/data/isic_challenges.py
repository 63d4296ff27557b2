"""The ISIC challenge distributions beside 2019: 2018 Task 3 (one-hot CSVs, HAM10000 training images) and 2020 (binary
target + diagnosis, patient ids, a published duplicate list).

Files are found in ``<root>/<folder>/`` or in the folder an archive unpacks to (``X.zip`` → ``X/``), so both a
``lesionlab data download`` result and files placed by hand are read.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from lesionlab.data.info import get_info
from lesionlab.data.loaders import DATASETS, DatasetRequest, dataset_dir, read_table
from lesionlab.data.table import DatasetError, LesionDataset, attach_paths, index_images, normalise_table
from lesionlab.data.taxonomy import HAM7, ISIC2020_DX, onehot_to_labels

logger = logging.getLogger(__name__)

#: ISIC 2018 Task 3 parts: option value → (file stem, split name used in ``official_split``).
ISIC2018_PARTS = {"training": ("Training", "train"), "validation": ("Validation", "val"), "test": ("Test", "test")}
ISIC2018_CLASSES = ("MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC")


def find_challenge_file(base: Path, name: str) -> Path | None:
    """``base/name``, else ``base/<archive>/name`` for the folder an archive of that name unpacks to."""
    for candidate in (base / name, base / Path(name).stem / name):
        if candidate.is_file():
            return candidate
    return None


def _manual(req: DatasetRequest, name: str) -> str:
    return get_info(name).manual.replace("<root>", str(req.root))


def _parts(req: DatasetRequest, base: Path) -> list[str]:
    wanted = req.options.get("parts")
    if wanted is None:
        present = [p for p, (stem, _) in ISIC2018_PARTS.items()
                   if find_challenge_file(base, f"ISIC2018_Task3_{stem}_GroundTruth.csv")]
        if not present:
            raise DatasetError(f"No ISIC 2018 Task 3 ground truth in {base} (looked for ISIC2018_Task3_"
                               f"{{Training,Validation,Test}}_GroundTruth.csv). {_manual(req, 'isic2018')}")
        return present
    parts = [p.strip().lower() for p in (wanted.split(",") if isinstance(wanted, str) else wanted)]
    bad = sorted(set(parts) - set(ISIC2018_PARTS))
    if bad:
        raise DatasetError(f"isic2018: unknown parts {bad}; choose from {', '.join(ISIC2018_PARTS)}")
    return parts


@DATASETS.register("isic2018", help="ISIC 2018 Task 3: one-hot ground truth of training/validation/test (option "
                   "parts=training,test), lesion groupings, official_split column")
def load_isic2018(req: DatasetRequest) -> LesionDataset:
    base = dataset_dir(req, get_info("isic2018").folder)
    frames, folders = [], []
    for part in _parts(req, base):
        stem, split = ISIC2018_PARTS[part]
        gt_path = find_challenge_file(base, f"ISIC2018_Task3_{stem}_GroundTruth.csv")
        if gt_path is None:
            raise DatasetError(f"ISIC2018_Task3_{stem}_GroundTruth.csv not found in {base}. {_manual(req, 'isic2018')}")
        gt = read_table(gt_path)
        if "image" not in gt.columns:
            raise DatasetError(f"{gt_path} has no 'image' column; columns: {list(gt.columns)}")
        labels = onehot_to_labels(gt, ISIC2018_CLASSES)
        frames.append(pd.DataFrame({"image_id": gt["image"].astype(str), "label": labels.str.lower(),
                                    "official_split": split}))
        folders.append(base / f"ISIC2018_Task3_{stem}_Input")
    table = pd.concat(frames, ignore_index=True)
    groupings = find_challenge_file(base, "ISIC2018_Task3_Training_LesionGroupings.csv")
    if groupings is not None:
        groups = read_table(groupings).rename(columns={"image": "image_id"})
        table = table.merge(groups[["image_id", "lesion_id"]].astype(str), on="image_id", how="left")
    elif (table["official_split"] == "train").any():
        logger.warning("isic2018: ISIC2018_Task3_Training_LesionGroupings.csv not found; each image is its own lesion")
    if req.image_dir is not None:
        folders = [req.image_dir]
    table = normalise_table(table, HAM7, "isic2018")
    return LesionDataset("isic2018", HAM7, attach_paths(table, index_images(folders), "isic2018", req.skip_missing))


_ISIC2020_GT = ("ISIC_2020_Training_GroundTruth_v2.csv", "ISIC_2020_Training_GroundTruth.csv")


def drop_listed_duplicates(table: pd.DataFrame, duplicates: pd.DataFrame, source: str) -> pd.DataFrame:
    """Drop the second image of every published duplicate pair (``image_name_1``, ``image_name_2``)."""
    need = {"image_name_1", "image_name_2"}
    if not need <= set(duplicates.columns):
        raise DatasetError(f"{source}: the duplicate list needs columns {sorted(need)}, has {list(duplicates.columns)}")
    second = set(duplicates["image_name_2"].astype(str)) - set(duplicates["image_name_1"].astype(str))
    drop = table["image_id"].isin(second)
    logger.info("%s: dropping %d images listed as duplicates", source, int(drop.sum()))
    return table[~drop].reset_index(drop=True)


@DATASETS.register("isic2020", help="ISIC 2020: ground truth v2 (patient and lesion ids, diagnosis, target), the "
                   "duplicate list dropped, ISIC_2020_Training_JPEG/; patient-disjoint splits")
def load_isic2020(req: DatasetRequest) -> LesionDataset:
    base = dataset_dir(req, get_info("isic2020").folder)
    gt_path = req.csv or next((p for p in (find_challenge_file(base, n) for n in _ISIC2020_GT) if p), None)
    if gt_path is None:
        raise DatasetError(f"ISIC 2020 ground truth not found in {base} (looked for {', '.join(_ISIC2020_GT)}). "
                           + _manual(req, "isic2020"))
    gt = read_table(Path(gt_path))
    need = {"image_name", "patient_id", "diagnosis", "target"}
    if not need <= set(gt.columns):
        raise DatasetError(f"{gt_path} lacks columns {sorted(need - set(gt.columns))}")
    target = pd.to_numeric(gt["target"], errors="coerce")
    if not target.isin([0, 1]).all():
        raise DatasetError(f"{gt_path}: target must be 0 or 1 (rows {gt.loc[~target.isin([0, 1]), 'image_name'][:5]})")
    table = pd.DataFrame({
        "image_id": gt["image_name"].astype(str), "label": gt["diagnosis"], "patient_id": gt["patient_id"],
        "lesion_id": gt.get("lesion_id"), "age": gt.get("age_approx"), "sex": gt.get("sex"),
        "site": gt.get("anatom_site_general_challenge"), "target": target.astype(int),
        "melanoma": target.astype(int) == 1, "diagnosis": gt["diagnosis"].astype(str),
    })
    odd = table["melanoma"] != (table["diagnosis"].str.lower() == "melanoma")
    if odd.any():
        logger.warning("isic2020: %d images whose target disagrees with a melanoma diagnosis (first: %s)",
                       int(odd.sum()), table.loc[odd, "image_id"].head(3).tolist())
    dup_path = find_challenge_file(base, "ISIC_2020_Training_Duplicates.csv")
    if dup_path is not None and not req.options.get("keep_duplicates"):
        table = drop_listed_duplicates(table, read_table(dup_path), "isic2020")
    elif dup_path is None:
        logger.warning("isic2020: ISIC_2020_Training_Duplicates.csv not found in %s; 425 known duplicates are kept "
                       "(they can leak across splits)", base)
    info = get_info("isic2020")
    folders = [req.image_dir] if req.image_dir else [base / f for f in info.image_folders]
    table = normalise_table(table, ISIC2020_DX, "isic2020")
    table = attach_paths(table, index_images(folders), "isic2020", req.skip_missing)
    return LesionDataset("isic2020", ISIC2020_DX, table)
