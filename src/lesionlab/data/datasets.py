"""Dataset loaders, registered by name. Each turns files on disk into a :class:`LesionDataset`."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from lesionlab.config import DataConfig
from lesionlab.data import (  # noqa: F401  (each registers its loaders in DATASETS)
    derm7pt,
    dermamnist,
    isic_archive,
    isic_challenges,
    merge,
    pad_ufes,
    ph2,
)
from lesionlab.data.info import get_info
from lesionlab.data.loaders import DATASETS, DatasetRequest, dataset_dir, first_existing, image_folders, read_table
from lesionlab.data.roots import DATA_ENV, resolve_data_root
from lesionlab.data.table import (
    IMAGE_EXTENSIONS,
    DatasetError,
    LesionDataset,
    attach_paths,
    index_images,
    normalise_table,
)
from lesionlab.data.taxonomy import HAM7, ISIC8, TAXONOMIES, Taxonomy, ham_to_isic8, onehot_to_labels

logger = logging.getLogger(__name__)


@DATASETS.register("ham10000", help="HAM10000: HAM10000_metadata.csv + official image folders (or data.image_dir)")
def load_ham10000(req: DatasetRequest) -> LesionDataset:
    info = get_info("ham10000")
    base = dataset_dir(req, info.folder)
    meta_path = req.csv or first_existing(base, ("HAM10000_metadata.csv", "HAM10000_metadata.tab"),
                                           "HAM10000 metadata", info.manual)
    meta = read_table(Path(meta_path))
    need = {"image_id", "lesion_id", "dx"}
    if not need <= set(meta.columns):
        raise DatasetError(f"{meta_path} lacks columns {sorted(need - set(meta.columns))}")
    table = pd.DataFrame({
        "image_id": meta["image_id"].astype(str), "label": meta["dx"], "lesion_id": meta["lesion_id"],
        "age": meta.get("age"), "sex": meta.get("sex"), "site": meta.get("localization"),
        "dx_type": meta.get("dx_type"),
    })
    folders = image_folders(req, base, info.image_folders)
    if not folders:
        raise DatasetError(f"No HAM10000 image folder under {base} (looked for {info.image_folders}).", info.manual)
    table = normalise_table(table, HAM7, "ham10000")
    table = attach_paths(table, index_images(folders), "ham10000", req.skip_missing)
    dataset = LesionDataset("ham10000", HAM7, table)
    gt = req.options.get("isic_ground_truth")
    if gt:  # 8-class ISIC 2019 labels for the HAM images (akiec -> AK / SCC)
        isic = ham_to_isic8(dataset.table, str(gt))
        dataset = LesionDataset("ham10000", ISIC8, dataset.table.assign(label=isic.to_numpy()))
    return dataset


@DATASETS.register("isic2019", help="ISIC 2019: one-hot ground truth + metadata CSV + ISIC_2019_Training_Input/")
def load_isic2019(req: DatasetRequest) -> LesionDataset:
    info = get_info("isic2019")
    base = dataset_dir(req, info.folder)
    gt_path = req.csv or first_existing(base, ("ISIC_2019_Training_GroundTruth.csv",), "ISIC 2019 ground truth",
                                         info.manual)
    gt = read_table(Path(gt_path))
    if "UNK" in gt.columns and (gt["UNK"].astype(float) >= 0.5).any():
        n = int((gt["UNK"].astype(float) >= 0.5).sum())
        logger.warning("isic2019: dropping %d rows labelled UNK (outside the 8 classes)", n)
        gt = gt[gt["UNK"].astype(float) < 0.5]
    table = pd.DataFrame({"image_id": gt["image"].astype(str), "label": onehot_to_labels(gt, ISIC8.classes)})
    meta_name = req.options.get("metadata", "ISIC_2019_Training_Metadata.csv")
    if (base / meta_name).is_file():
        meta = read_table(base / meta_name).rename(columns={
            "image": "image_id", "age_approx": "age", "anatom_site_general": "site"})
        table = table.merge(meta[["image_id", "age", "sex", "site", "lesion_id"]], on="image_id", how="left")
    else:
        logger.warning("isic2019: %s not found; no lesion ids or patient metadata", base / meta_name)
    folders = image_folders(req, base, info.image_folders)
    if not folders:
        raise DatasetError(f"No ISIC 2019 image folder under {base}.", info.manual)
    table = normalise_table(table, ISIC8, "isic2019")
    table = attach_paths(table, index_images(folders), "isic2019", req.skip_missing)
    return LesionDataset("isic2019", ISIC8, table)


def _taxonomy_for_labels(labels: list[str], name: str, explicit: str | None) -> Taxonomy:
    """The named taxonomy, else the first built-in one that knows every label, else a custom one."""
    if explicit:
        return TAXONOMIES.get(explicit)
    for tax_name in TAXONOMIES:
        tax = TAXONOMIES.get(tax_name)
        try:
            [tax.canonical(x) for x in labels]
        except ValueError:
            continue
        return tax
    classes = tuple(sorted({str(x) for x in labels}))
    return Taxonomy(name=f"custom:{name}", classes=classes, descriptions={c: c for c in classes})


@DATASETS.register("onehot-csv", help="any ISIC-style one-hot CSV (image,MEL,NV,...) + data.image_dir")
def load_onehot_csv(req: DatasetRequest) -> LesionDataset:
    if req.csv is None:
        raise DatasetError("onehot-csv needs data.csv (the one-hot ground-truth table)")
    gt = read_table(req.csv)
    id_col = req.options.get("image_column", "image")
    if id_col not in gt.columns:
        raise DatasetError(f"{req.csv} has no {id_col!r} column; set data.options.image_column")
    class_cols = [c for c in gt.columns if c != id_col and c.upper() != "UNK"
                  and pd.api.types.is_numeric_dtype(gt[c])]
    tax = _taxonomy_for_labels(class_cols, "onehot", req.options.get("taxonomy"))
    table = pd.DataFrame({"image_id": gt[id_col].astype(str), "label": onehot_to_labels(gt, class_cols, id_col)})
    table = normalise_table(table, tax, "onehot-csv")
    image_dir = req.image_dir or req.csv.parent
    table = attach_paths(table, index_images([image_dir]), "onehot-csv", req.skip_missing)
    return LesionDataset("onehot-csv", tax, table)


_CSV_ALIASES = {
    "image_id": ("image_id", "image", "path", "file", "filename", "isic_id"),
    "label": ("label", "dx", "diagnosis", "class", "target"),
    "lesion_id": ("lesion_id", "lesion"),
    "patient_id": ("patient_id", "patient"),
    "age": ("age", "age_approx"),
    "sex": ("sex", "gender"),
    "site": ("site", "localization", "anatom_site_general", "location"),
}


@DATASETS.register("csv", help="generic table: image path or id, label, optional lesion/patient id, age, sex, site")
def load_csv(req: DatasetRequest) -> LesionDataset:
    if req.csv is None:
        raise DatasetError("the csv dataset needs data.csv")
    raw = read_table(req.csv)
    cols: dict[str, str] = {}
    lower = {c.lower(): c for c in raw.columns}
    for field_name, aliases in _CSV_ALIASES.items():
        chosen = req.options.get(f"{field_name}_column")
        if chosen is None:
            chosen = next((lower[a] for a in aliases if a in lower), None)
        if chosen is not None:
            if chosen not in raw.columns:
                raise DatasetError(f"{req.csv}: column {chosen!r} not found; columns: {list(raw.columns)}")
            cols[field_name] = chosen
    for need in ("image_id", "label"):
        if need not in cols:
            raise DatasetError(f"{req.csv}: no {need} column (tried {_CSV_ALIASES[need]}); "
                               f"set data.options.{need}_column")
    table = pd.DataFrame({k: raw[v] for k, v in cols.items()})
    base = req.image_dir or req.csv.parent
    refs = table["image_id"].astype(str)
    as_paths = refs.map(lambda r: base / r if Path(r).suffix.lower() in IMAGE_EXTENSIONS else None)
    table["image_id"] = refs.map(lambda r: Path(r).stem if Path(r).suffix.lower() in IMAGE_EXTENSIONS else r)
    tax = _taxonomy_for_labels(table["label"].astype(str).tolist(), "csv", req.options.get("taxonomy"))
    table = normalise_table(table, tax, "csv")
    if as_paths.notna().all():
        index = {Path(p).stem: Path(p) for p in as_paths if Path(p).is_file()}
    else:
        index = index_images([base])
    table = attach_paths(table, index, "csv", req.skip_missing)
    return LesionDataset(f"csv:{req.csv.stem}", tax, table)


@DATASETS.register("folder", help="one sub-folder of images per class (data.image_dir or data.root)")
def load_folder(req: DatasetRequest) -> LesionDataset:
    base = req.image_dir or req.root
    if not base.is_dir():
        raise DatasetError(f"Image folder not found: {base}")
    rows = []
    for class_dir in sorted(p for p in base.iterdir() if p.is_dir()):
        for img in sorted(class_dir.iterdir()):
            if img.suffix.lower() in IMAGE_EXTENSIONS:
                rows.append({"image_id": f"{class_dir.name}/{img.stem}", "label": class_dir.name, "path": str(img)})
    if not rows:
        raise DatasetError(f"No class sub-folders with images under {base}")
    table = pd.DataFrame(rows)
    tax = _taxonomy_for_labels(table["label"].tolist(), "folder", req.options.get("taxonomy"))
    return LesionDataset(f"folder:{base.name}", tax, normalise_table(table, tax, "folder"))


def load_dataset(cfg: DataConfig) -> LesionDataset:
    """Load ``cfg.dataset`` and express it in ``cfg.taxonomy`` (when given)."""
    loader = DATASETS.get(cfg.dataset)
    req = DatasetRequest(
        root=resolve_data_root(cfg.root),
        image_dir=Path(cfg.image_dir).expanduser() if cfg.image_dir else None,
        csv=Path(cfg.csv).expanduser() if cfg.csv else None,
        skip_missing=cfg.skip_bad,
        options=dict(cfg.options),
        load=load_dataset,
    )
    try:
        dataset = loader(req)
    except DatasetError as exc:
        if not exc.hint:
            raise
        raise DatasetError(exc.problem, f"{exc.hint} Files already elsewhere: pass --data-root DIR or set "
                           f"{DATA_ENV}=DIR to their parent folder (data root now: {req.root}).") from None
    if len(dataset) == 0:
        raise DatasetError(f"{cfg.dataset}: no samples left to use")
    return dataset.relabel(cfg.taxonomy) if cfg.taxonomy else dataset
