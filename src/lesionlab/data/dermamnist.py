"""DermaMNIST (MedMNIST v2) ``.npz`` files as a dataset, and the lesion-disjoint "DermaMNIST-Corrected" rebuild.

The official DermaMNIST split is image-level: images of one lesion can sit in train and test. The loader exposes
that split as the ``official_split`` column (for comparison with published numbers); LesionLab's own split cannot
group such images either, because DermaMNIST carries no lesion ids. :func:`build_dermamnist` rebuilds the arrays
from the HAM10000 images with a lesion-disjoint 70/10/20 split and a sidecar CSV of HAM image and lesion ids,
which the loader picks up (``options.variant=corrected``).
"""

from __future__ import annotations

import logging
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from lesionlab.data.cache import npz_reference
from lesionlab.data.info import get_info
from lesionlab.data.loaders import DATASETS, DatasetRequest
from lesionlab.data.splits import SPLITS
from lesionlab.data.table import DatasetError, LesionDataset, normalise_table
from lesionlab.data.taxonomy import HAM7

logger = logging.getLogger(__name__)

OFFICIAL_SIZES = (28, 64, 128, 224)
CORRECTED_SPLIT_CSV = "dermamnist_corrected_split.csv"
#: MedMNIST's DermaMNIST label order (0..6) is HAM7's class order.
LABELS = HAM7.classes


def dermamnist_filename(size: int = 28, variant: str = "official") -> str:
    """``dermamnist.npz`` / ``dermamnist_64.npz`` (MedMNIST), or ``dermamnist_corrected_<size>.npz``."""
    if variant == "corrected":
        return f"dermamnist_corrected_{size}.npz"
    return "dermamnist.npz" if size == 28 else f"dermamnist_{size}.npz"


def _flag(value: object) -> bool:
    return value is True or str(value).strip().lower() in ("1", "true", "yes", "on")


def _npz_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Array shapes of an ``.npz`` read from the ``.npy`` headers, without loading the pixels."""
    shapes = {}
    try:
        with zipfile.ZipFile(path) as zf:
            for member in zf.namelist():
                if member.endswith(".npy"):
                    with zf.open(member) as fh:
                        version = np.lib.format.read_magic(fh)
                        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                            np.lib.format.read_array_header_2_0
                        shapes[member[: -len(".npy")]] = read(fh)[0]
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise DatasetError(f"{path} is not a readable .npz file ({exc})") from exc
    return shapes


def fetch_with_medmnist(folder: Path, size: int = 28) -> Path:
    """Download the official DermaMNIST file into ``folder`` through the ``medmnist`` package."""
    manual = get_info("dermamnist").manual
    try:
        import medmnist
    except ImportError as exc:
        raise DatasetError("Downloading DermaMNIST needs the medmnist package: pip install lesionlab[dermamnist]. "
                           f"Or place the file by hand: {manual}") from exc
    folder.mkdir(parents=True, exist_ok=True)  # medmnist refuses a root that does not exist
    try:
        medmnist.DermaMNIST(split="train", root=str(folder), size=size, download=True)
    except Exception as exc:  # medmnist turns every failure (offline, checksum) into a bare RuntimeError
        raise DatasetError(f"medmnist could not download DermaMNIST ({exc}). {manual}") from exc
    return folder / dermamnist_filename(size)


@DATASETS.register("dermamnist", help="MedMNIST DermaMNIST .npz (options: size=28|64|128|224, file=PATH, "
                   "download=true, variant=corrected); column official_split holds the file's split")
def load_dermamnist(req: DatasetRequest) -> LesionDataset:
    """DermaMNIST arrays as ``npz://`` rows; ``official_split`` keeps the split the file ships with.

    Options: ``size`` (28 default, 64, 128, 224), ``file`` (an explicit ``.npz``), ``download`` (fetch the
    official file with medmnist when missing), ``variant`` (``official`` or ``corrected``: the output of
    :func:`build_dermamnist`, whose sidecar CSV restores HAM image and lesion ids).
    """
    info = get_info("dermamnist")
    variant = str(req.options.get("variant", "official")).lower()
    if variant not in ("official", "corrected"):
        raise DatasetError(f"dermamnist: options.variant must be 'official' or 'corrected', got {variant!r}")
    try:
        size = int(req.options.get("size", 28))
    except (TypeError, ValueError) as exc:
        raise DatasetError(f"dermamnist: options.size must be an integer, got {req.options['size']!r}") from exc
    if variant == "official" and size not in OFFICIAL_SIZES:
        raise DatasetError(f"dermamnist: options.size must be one of {OFFICIAL_SIZES}, got {size}")
    if req.options.get("file"):
        path = Path(str(req.options["file"])).expanduser()
    else:
        path = req.root / info.folder / dermamnist_filename(size, variant)
        if not path.is_file() and variant == "official" and _flag(req.options.get("download", False)):
            path = fetch_with_medmnist(path.parent, size)
    if not path.is_file():
        hint = ("Build it with `lesionlab data build-dermamnist`." if variant == "corrected" else
                f"{info.manual} (data.options.download=true fetches it through medmnist).")
        raise DatasetError(f"DermaMNIST file not found: {path}.", hint)
    table = _read_npz_table(path)
    sidecar = path.parent / CORRECTED_SPLIT_CSV
    if path.name.startswith("dermamnist_corrected") and sidecar.is_file():
        table = _attach_ham_ids(table, sidecar)
        name = "dermamnist-corrected"
    else:
        logger.warning("dermamnist: the official MedMNIST split is image-level, not lesion-disjoint, and the file "
                       "has no lesion ids, so images of one lesion may fall into different splits. For a "
                       "lesion-disjoint version run `lesionlab data build-dermamnist` (DermaMNIST-Corrected).")
        name = "dermamnist"
    return LesionDataset(name, HAM7, normalise_table(table, HAM7, name))


def _read_npz_table(path: Path) -> pd.DataFrame:
    shapes = _npz_shapes(path)
    missing = [f"{s}_{kind}" for s in SPLITS for kind in ("images", "labels") if f"{s}_{kind}" not in shapes]
    if missing:
        raise DatasetError(f"{path} lacks the MedMNIST arrays {missing} (has {sorted(shapes)})")
    resolved = path.resolve()
    frames = []
    with np.load(resolved) as npz:
        for split in SPLITS:
            labels = np.asarray(npz[f"{split}_labels"]).reshape(-1).astype(np.int64)
            n = shapes[f"{split}_images"][0]
            if len(labels) != n:
                raise DatasetError(f"{path}: {split} has {n} images but {len(labels)} labels")
            if n and (labels.min() < 0 or labels.max() >= len(LABELS)):
                raise DatasetError(f"{path}: {split} labels must lie in 0..{len(LABELS) - 1}")
            ids = [f"dermamnist-{split}-{i}" for i in range(n)]
            frames.append(pd.DataFrame({
                "image_id": ids,
                "path": [npz_reference(resolved, f"{split}_images", i) for i in range(n)],
                "label": np.asarray(LABELS, dtype=object)[labels],
                "lesion_id": ids,  # unknown: every image is its own group
                "official_split": split,
            }))
    return pd.concat(frames, ignore_index=True)


def _attach_ham_ids(table: pd.DataFrame, sidecar: Path) -> pd.DataFrame:
    """Replace the positional ids of a DermaMNIST-Corrected file by the HAM ids of its sidecar CSV."""
    ids = pd.read_csv(sidecar)
    split_order = {s: i for i, s in enumerate(SPLITS)}
    ids = ids.sort_values("split", key=lambda s: s.map(split_order), kind="stable").reset_index(drop=True)
    if len(ids) != len(table) or not (ids["split"].to_numpy() == table["official_split"].to_numpy()).all() \
            or not (ids["label"].astype(str).to_numpy() == table["label"].to_numpy()).all():
        raise DatasetError(f"{sidecar} does not match the arrays beside it (rebuild them together with "
                           "`lesionlab data build-dermamnist`)")
    return table.assign(image_id=ids["image_id"].astype(str).to_numpy(), lesion_id=ids["lesion_id"].to_numpy())
