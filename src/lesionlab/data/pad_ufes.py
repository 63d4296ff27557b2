"""PAD-UFES-20: smartphone clinical photos (not dermoscopic) with patient and lesion ids, ``metadata.csv``."""

from __future__ import annotations

import pandas as pd

from lesionlab.data.info import get_info
from lesionlab.data.loaders import DATASETS, DatasetRequest, dataset_dir, read_table
from lesionlab.data.table import DatasetError, LesionDataset, attach_paths, index_images, normalise_table
from lesionlab.data.taxonomy import ISIC8

#: PAD-UFES-20 ``diagnostic`` codes → ISIC-8 (HAM7 and triage follow from the taxonomy maps).
PAD_TO_ISIC8 = {"ACK": "AK", "BCC": "BCC", "MEL": "MEL", "NEV": "NV", "SCC": "SCC", "SEK": "BKL"}


@DATASETS.register("pad_ufes_20", help="PAD-UFES-20: metadata.csv (patient_id, lesion_id, diagnostic, img_id) + "
                   "images/ or imgs_part_1..3/; clinical smartphone photos")
def load_pad_ufes_20(req: DatasetRequest) -> LesionDataset:
    info = get_info("pad_ufes_20")
    base = dataset_dir(req, info.folder)
    path = req.csv or base / "metadata.csv"
    if not path.is_file():
        raise DatasetError(f"PAD-UFES-20 metadata.csv not found in {base}. "
                           + info.manual.replace("<root>", str(req.root)))
    meta = read_table(path)
    need = {"img_id", "patient_id", "lesion_id", "diagnostic"}
    if not need <= set(meta.columns):
        raise DatasetError(f"{path} lacks columns {sorted(need - set(meta.columns))}")
    codes = meta["diagnostic"].astype(str).str.strip().str.upper()
    bad = sorted(set(codes) - set(PAD_TO_ISIC8))
    if bad:
        raise DatasetError(f"{path}: unknown diagnostic codes {bad}; expected {sorted(PAD_TO_ISIC8)}")
    table = pd.DataFrame({
        "image_id": meta["img_id"].astype(str).str.rsplit(".", n=1).str[0],
        "label": codes.map(PAD_TO_ISIC8), "diagnosis": codes,
        "lesion_id": "PAD_" + meta["lesion_id"].astype(str),  # numeric ids: keep them apart from other sets'
        "patient_id": meta["patient_id"].astype(str), "age": meta.get("age"),
        "sex": meta.get("gender"), "site": meta.get("region"), "melanoma": codes == "MEL",
        "biopsied": meta.get("biopsed"), "fitzpatrick": meta.get("fitspatrick"), "modality": "clinical",
    })
    folders = [req.image_dir] if req.image_dir else [base / f for f in info.image_folders]
    nested = [f / "images" for f in folders if (f / "images").is_dir()]  # zip parts may hold an images/ folder
    table = normalise_table(table, ISIC8, "pad_ufes_20")
    return LesionDataset("pad_ufes_20", ISIC8,
                         attach_paths(table, index_images(folders + nested), "pad_ufes_20", req.skip_missing))
