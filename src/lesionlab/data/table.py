"""The common sample-table contract every dataset yields, so sources can be merged and relabelled."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lesionlab.data.taxonomy import AMBIGUOUS, Taxonomy, get_taxonomy, label_map
from lesionlab.errors import LesionLabError

logger = logging.getLogger(__name__)

#: Columns of every sample table, in order. ``path`` is an image file (or an ``npz://`` reference), ``label``
#: a class code of the dataset's taxonomy; metadata columns hold NaN / "unknown" when absent.
COLUMNS = ("image_id", "path", "label", "lesion_id", "patient_id", "age", "sex", "site", "source")

SEXES = ("male", "female", "unknown")


class DatasetError(LesionLabError, ValueError):
    """A dataset could not be loaded: missing files, unreadable tables, unknown labels, missing images.

    ``problem`` says what is wrong, ``hint`` how to get the files (a caller with a better hint can replace it).
    """

    def __init__(self, problem: str, hint: str = "") -> None:
        super().__init__(f"{problem} {hint}".strip())
        self.problem, self.hint = problem, hint


@dataclass(frozen=True)
class LesionDataset:
    """A labelled sample table plus its label space. Immutable: transformations return new objects."""

    name: str
    taxonomy: Taxonomy
    table: pd.DataFrame
    notes: Mapping[str, Any] = field(default_factory=dict)  # loader findings for ``data info`` (e.g. duplicates)

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.taxonomy.classes

    def __len__(self) -> int:
        return len(self.table)

    def class_totals(self) -> pd.Series:
        """Images per class in taxonomy order (zeros included)."""
        return self.table["label"].value_counts().reindex(self.class_names, fill_value=0)

    def targets(self) -> np.ndarray:
        """Integer class indices aligned with the table rows."""
        index = {c: i for i, c in enumerate(self.class_names)}
        return self.table["label"].map(index).to_numpy(dtype=np.int64)

    def relabel(self, target: str) -> LesionDataset:
        """The same samples in another taxonomy (see :mod:`lesionlab.data.taxonomy` for the maps)."""
        if target == self.taxonomy.name:
            return self
        mapping = label_map(self.taxonomy.name, target)
        table = self.table.copy()
        unmapped = sorted(set(table["label"]) - set(mapping))
        if unmapped:
            raise DatasetError(
                f"{self.name}: labels {unmapped} cannot be mapped from {self.taxonomy.name!r} to {target!r}"
                + (" (HAM akiec needs the ISIC 2019 ground truth: use dataset isic2019 labels or "
                   "options.isic_ground_truth)" if "akiec" in unmapped else "")
            )
        table["label"] = table["label"].map(mapping)
        return replace(self, taxonomy=get_taxonomy(target), table=table)

    def relabel_partial(self, target: str) -> tuple[LesionDataset, pd.DataFrame]:
        """The rows whose label maps into ``target`` (relabelled) and the rest (original labels).

        For evaluations on sets with diagnoses outside a model's label space (ISIC 2020 "unknown", Derm7pt
        "miscellaneous"): those images are returned to be reported, never dropped silently.
        """
        if target == self.taxonomy.name:
            return self, self.table.iloc[:0].copy()
        ambiguous = sorted(set(self.table["label"]) & AMBIGUOUS.get((self.taxonomy.name, target), set()))
        if ambiguous:  # these have counterparts, just not one each: refuse rather than report them as "outside"
            return self.relabel(target), self.table.iloc[:0].copy()  # raises, naming the fix
        inside = self.table["label"].isin(list(label_map(self.taxonomy.name, target))).to_numpy()
        return self.subset(inside).relabel(target), self.table[~inside].reset_index(drop=True)

    def subset(self, mask: np.ndarray | pd.Series) -> LesionDataset:
        return replace(self, table=self.table[np.asarray(mask)].reset_index(drop=True))

    def summary(self) -> dict:
        """Counts for ``data info`` and the report."""
        t = self.table
        return {
            "dataset": self.name,
            "taxonomy": self.taxonomy.name,
            "images": len(t),
            "lesions": int(t["lesion_id"].nunique()),
            "patients": int(t["patient_id"].nunique()) if t["patient_id"].notna().any() else None,
            "classes": {k: int(v) for k, v in self.class_totals().items()},
            "age_missing": int(t["age"].isna().sum()),
            "sources": {k: int(v) for k, v in t["source"].value_counts().items()},
            **dict(self.notes),
        }


def normalise_table(frame: pd.DataFrame, taxonomy: Taxonomy, source: str) -> pd.DataFrame:
    """Fill missing contract columns, canonicalise labels and metadata, validate.

    Unknown labels raise a :class:`DatasetError` that lists them; missing lesion ids fall back to the image id
    (so such samples form their own group) with a warning.
    """
    t = frame.copy()
    for col in COLUMNS:
        if col not in t.columns:
            t[col] = np.nan
    bad = set()
    labels: list[str | None] = []
    for lab in t["label"]:
        try:
            labels.append(taxonomy.canonical(lab))
        except ValueError:
            bad.add(str(lab))
            labels.append(None)
    if bad:
        raise DatasetError(
            f"{source}: unknown label(s) {sorted(bad)[:10]} for taxonomy {taxonomy.name!r} "
            f"(known: {', '.join(taxonomy.classes)})"
        )
    t["label"] = labels
    t["image_id"] = t["image_id"].astype(str)
    if t["image_id"].duplicated().any():
        dups = t.loc[t["image_id"].duplicated(), "image_id"].tolist()
        raise DatasetError(f"{source}: duplicate image ids {dups[:5]}")
    missing_lesion = t["lesion_id"].isna() | (t["lesion_id"].astype(str).str.strip() == "")
    if missing_lesion.any():
        logger.warning("%s: %d samples have no lesion_id; each becomes its own group", source, missing_lesion.sum())
        # object dtype first: an all-missing column is float64, which pandas >= 3 refuses to fill with strings
        t["lesion_id"] = t["lesion_id"].astype(object)
        t.loc[missing_lesion, "lesion_id"] = "img:" + t.loc[missing_lesion, "image_id"]
    t["lesion_id"] = t["lesion_id"].astype(str)
    t["patient_id"] = t["patient_id"].where(t["patient_id"].notna(), None)
    t["age"] = pd.to_numeric(t["age"], errors="coerce")
    t.loc[(t["age"] < 0) | (t["age"] > 120), "age"] = np.nan
    sex = t["sex"].astype(str).str.strip().str.lower()
    t["sex"] = sex.where(sex.isin(["male", "female"]), "unknown")
    site = t["site"].astype(str).str.strip().str.lower()
    t["site"] = site.where(~site.isin(["nan", "", "none"]), "unknown")
    t["source"] = t["source"].fillna(source) if t["source"].notna().any() else source
    t["path"] = t["path"].astype(str)
    return t[list(COLUMNS) + [c for c in t.columns if c not in COLUMNS]].reset_index(drop=True)


IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def index_images(folders: list[Path]) -> dict[str, Path]:
    """Map image stem → path over the given folders (first folder wins on duplicates)."""
    found: dict[str, Path] = {}
    for folder in folders:
        if not folder.is_dir():
            continue
        for entry in sorted(folder.iterdir()):
            if entry.suffix.lower() in IMAGE_EXTENSIONS and entry.stem not in found:
                found[entry.stem] = entry
    return found


def attach_paths(table: pd.DataFrame, images: dict[str, Path], source: str, skip_missing: bool) -> pd.DataFrame:
    """Fill ``path`` from an image index; missing images raise (listing ids) or are skipped with a warning."""
    paths = table["image_id"].map(lambda i: str(images[i]) if i in images else None)
    missing = table.loc[paths.isna(), "image_id"].tolist()
    if missing:
        msg = f"{source}: {len(missing)} of {len(table)} images not found (first: {missing[:5]})"
        if not skip_missing:
            raise DatasetError(msg + "; pass data.skip_bad=true (--skip-bad) to skip them")
        logger.warning("%s; skipping them", msg)
    out = table.assign(path=paths)
    return out[out["path"].notna()].reset_index(drop=True)
