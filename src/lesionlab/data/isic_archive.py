"""ISIC Archive images from outside HAM10000 (the ISIC 2019 "MSK" part: ISIC 2017 / 2018 Task 1 images).

Layout under ``<root>/isic_archive/``: ``labels.csv`` (``image, isic2019_image, diagnosis, lesion_id, age_approx, sex,
anatom_site_general``; diagnosis as an ISIC 2019 code) and ``images_256/<image>.jpg``. Labels are ISIC-8, so HAM7
and triage follow from the taxonomy maps.

Most images have no lesion id, so two images of one lesion cannot be ruled out. Before any split the loader runs
the near-duplicate check (perceptual hashes of the whole frame and its centre square):

- near-duplicates *within* the set share one lesion id (``dup:<first image>``), so they land in one split;
- images that near-duplicate an image of another dataset (``options.check_against``, default HAM10000 and the
  external test set PH2, where found under the data root) are dropped.

The counts are in the dataset's ``notes`` (shown by ``lesionlab data info isic-archive``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from lesionlab.config import ConfigError, DataConfig
from lesionlab.data.info import get_info
from lesionlab.data.loaders import DATASETS, DatasetRequest, dataset_dir, first_existing, image_folders, read_table
from lesionlab.data.near_duplicates import MAX_DISTANCE, close_pairs_any, duplicate_groups, file_hashes
from lesionlab.data.roots import resolve_cache_dir
from lesionlab.data.table import DatasetError, LesionDataset, attach_paths, index_images, normalise_table
from lesionlab.data.taxonomy import ISIC8

logger = logging.getLogger(__name__)

#: Datasets an ISIC Archive image is checked against by default (skipped when absent under the data root).
CHECK_AGAINST = ("ham10000", "ph2")
OPTIONS = {"check_against", "max_distance", "cache_dir"}


def _other_hashes(name: str, req: DatasetRequest, cache: Path) -> np.ndarray | None:
    """Hashes of dataset ``name`` under the same root, or None when it is not there."""
    if req.load is None:
        raise ConfigError("isic-archive is loaded through lesionlab.data.datasets.load_dataset")
    try:
        other = req.load(DataConfig(dataset=name, root=str(req.root)))
    except DatasetError as exc:
        logger.info("isic-archive: %s not found under %s, not checked for near-duplicates (%s)", name, req.root,
                    exc.problem)
        return None
    return file_hashes(other.table["path"].tolist(), cache, progress=True, what=name)


def group_near_duplicates(table: pd.DataFrame, req: DatasetRequest) -> tuple[pd.DataFrame, dict]:
    """Share lesion ids within near-duplicate groups; drop images close to another dataset's. Returns counts."""
    unknown = set(req.options) - OPTIONS
    if unknown:
        raise ConfigError(f"unknown data.options {sorted(unknown)} for isic-archive; valid: {sorted(OPTIONS)}")
    max_distance = int(req.options.get("max_distance", MAX_DISTANCE))
    cache = resolve_cache_dir(req.options.get("cache_dir"))
    hashes = file_hashes(table["path"].tolist(), cache, progress=True, what="isic-archive")
    group = duplicate_groups(hashes, max_distance)
    ids = table["image_id"].to_numpy()
    sizes = pd.Series(group).map(pd.Series(group).value_counts()).to_numpy()
    in_group = sizes > 1
    table = table.copy()
    table["near_duplicate_of"] = np.where(in_group, ids[group], "")
    table.loc[in_group, "lesion_id"] = "dup:" + ids[group][in_group]
    notes: dict = {"near_duplicates": {
        "max_distance": max_distance,
        "within_set_images": int(in_group.sum()),
        "within_set_groups": len(set(group[in_group])),
    }}
    drop = np.zeros(len(table), bool)
    for name in req.options.get("check_against", CHECK_AGAINST):
        other = _other_hashes(str(name), req, cache)
        if other is None:
            notes["near_duplicates"][f"against_{name}"] = "not checked (dataset not found)"
            continue
        hit = close_pairs_any(hashes, other, max_distance)[:, 0]
        notes["near_duplicates"][f"against_{name}"] = len(set(hit.tolist()))
        drop[hit] = True
    if drop.any():
        logger.warning("isic-archive: dropping %d images that near-duplicate another dataset's: %s",
                       int(drop.sum()), ids[drop][:10].tolist())
    notes["near_duplicates"]["dropped"] = int(drop.sum())
    return table[~drop].reset_index(drop=True), notes


@DATASETS.register("isic-archive", help="ISIC Archive images outside HAM10000 (labels.csv + images_256/); "
                   "near-duplicates grouped within the set, dropped when they match HAM10000 or PH2 "
                   "(options: check_against, max_distance)")
def load_isic_archive(req: DatasetRequest) -> LesionDataset:
    info = get_info("isic-archive")
    base = dataset_dir(req, info.folder)
    labels_path = req.csv or first_existing(base, ("labels.csv",), "ISIC Archive labels", info.manual)
    labels = read_table(Path(labels_path))
    need = {"image", "diagnosis"}
    if not need <= set(labels.columns):
        raise DatasetError(f"{labels_path} lacks columns {sorted(need - set(labels.columns))}")
    table = pd.DataFrame({
        "image_id": labels["image"].astype(str), "label": labels["diagnosis"],
        "lesion_id": labels.get("lesion_id"), "age": labels.get("age_approx"), "sex": labels.get("sex"),
        "site": labels.get("anatom_site_general"), "isic2019_image": labels.get("isic2019_image"),
    })
    folders = image_folders(req, base, info.image_folders)
    if not folders:
        raise DatasetError(f"No ISIC Archive image folder under {base} (looked for {info.image_folders}).",
                           info.manual)
    table = normalise_table(table, ISIC8, "isic-archive")
    table = attach_paths(table, index_images(folders), "isic-archive", req.skip_missing)
    table, notes = group_near_duplicates(table, req)
    return LesionDataset("isic-archive", ISIC8, table, notes=notes)
