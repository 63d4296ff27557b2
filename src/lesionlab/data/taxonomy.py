"""Label spaces (HAM10000 7-class, ISIC 2019 8-class, 3-level triage priority) and maps between them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import pandas as pd

from lesionlab.registry import Registry


class LabelMappingError(ValueError):
    """A label has no counterpart in the target taxonomy (or is unknown in its own)."""


@dataclass(frozen=True)
class Taxonomy:
    """An ordered set of class codes with readable names and the spellings each code is known by."""

    name: str
    classes: tuple[str, ...]
    descriptions: Mapping[str, str]
    aliases: Mapping[str, str] = field(default_factory=dict)  # lower-case spelling -> class code

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def index(self, label: str) -> int:
        return self.classes.index(self.canonical(label))

    def canonical(self, label: str) -> str:
        """Map any known spelling (case-insensitive) to this taxonomy's class code."""
        key = str(label).strip().lower()
        for c in self.classes:
            if c.lower() == key:
                return c
        if key in self.aliases:
            return self.aliases[key]
        raise LabelMappingError(f"Unknown label {label!r} for taxonomy {self.name!r}; known: {', '.join(self.classes)}")


TAXONOMIES: Registry[Taxonomy] = Registry("taxonomy")

HAM7 = Taxonomy(
    name="ham7",
    classes=("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"),
    descriptions={
        "akiec": "Actinic keratosis / intraepithelial carcinoma (Bowen's disease)",
        "bcc": "Basal cell carcinoma",
        "bkl": "Benign keratosis-like lesion",
        "df": "Dermatofibroma",
        "mel": "Melanoma",
        "nv": "Melanocytic nevus",
        "vasc": "Vascular lesion",
    },
    aliases={"ak": "akiec", "actinic keratosis": "akiec", "melanoma": "mel", "nevus": "nv", "bkl": "bkl"},
)

ISIC8 = Taxonomy(
    name="isic8",
    classes=("MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC"),
    descriptions={
        "MEL": "Melanoma",
        "NV": "Melanocytic nevus",
        "BCC": "Basal cell carcinoma",
        "AK": "Actinic keratosis",
        "BKL": "Benign keratosis (solar lentigo / seborrheic keratosis / lichen planus-like keratosis)",
        "DF": "Dermatofibroma",
        "VASC": "Vascular lesion",
        "SCC": "Squamous cell carcinoma",
    },
)

TRIAGE = Taxonomy(
    name="triage",
    classes=("P1", "P2", "P3"),
    descriptions={
        "P1": "Priority 1 - malignant (melanoma, basal or squamous cell carcinoma): refer urgently",
        "P2": "Priority 2 - actinic keratosis / nevus: monitor",
        "P3": "Priority 3 - benign (keratosis, dermatofibroma, vascular, other)",
    },
    aliases={"1": "P1", "2": "P2", "3": "P3", "priority-1": "P1", "priority-2": "P2", "priority-3": "P3"},
)

for _t in (HAM7, ISIC8, TRIAGE):
    TAXONOMIES.add(_t.name, _t, help=f"{_t.num_classes} classes: {', '.join(_t.classes)}")

# Direct class maps. HAM akiec -> ISIC8 is ambiguous (AK or SCC) and needs the ISIC 2019 ground truth:
# see :func:`ham_to_isic8`.
_MAPS: dict[tuple[str, str], dict[str, str]] = {
    ("isic8", "ham7"): {"MEL": "mel", "NV": "nv", "BCC": "bcc", "AK": "akiec", "SCC": "akiec", "BKL": "bkl",
                        "DF": "df", "VASC": "vasc"},
    ("ham7", "isic8"): {"mel": "MEL", "nv": "NV", "bcc": "BCC", "bkl": "BKL", "df": "DF", "vasc": "VASC"},
    ("ham7", "triage"): {"mel": "P1", "bcc": "P1", "akiec": "P2", "nv": "P2", "bkl": "P3", "df": "P3", "vasc": "P3"},
    ("isic8", "triage"): {"MEL": "P1", "BCC": "P1", "SCC": "P1", "AK": "P2", "NV": "P2", "BKL": "P3", "DF": "P3",
                          "VASC": "P3"},
}

#: Triage priority (1 = most urgent) of each class code in any taxonomy; unknown/other diagnoses are priority 3.
TRIAGE_PRIORITY: dict[str, int] = {
    **{k: int(v[1]) for k, v in _MAPS[("ham7", "triage")].items()},
    **{k: int(v[1]) for k, v in _MAPS[("isic8", "triage")].items()},
    "P1": 1, "P2": 2, "P3": 3,
}


def get_taxonomy(name: str) -> Taxonomy:
    return TAXONOMIES.get(name)


def triage_priority(label: str) -> int:
    """1 = malignant (MEL/BCC/SCC), 2 = AK/AKIEC or nevus, 3 = benign or other."""
    return TRIAGE_PRIORITY.get(label, TRIAGE_PRIORITY.get(label.upper(), TRIAGE_PRIORITY.get(label.lower(), 3)))


def can_map(src: str, dst: str) -> bool:
    return src == dst or (src, dst) in _MAPS


def label_map(src: str, dst: str) -> dict[str, str]:
    """The class-code map from taxonomy ``src`` to ``dst`` (identity when equal)."""
    if src == dst:
        return {c: c for c in get_taxonomy(src).classes}
    if (src, dst) not in _MAPS:
        raise LabelMappingError(f"No label map from {src!r} to {dst!r}; available: {sorted(_MAPS)}")
    return _MAPS[(src, dst)]


def map_labels(labels: Iterable[str], src: str, dst: str) -> list[str]:
    """Map labels between taxonomies; raises listing every label without a counterpart."""
    mapping = label_map(src, dst)
    src_tax = get_taxonomy(src)
    out, missing = [], set()
    for lab in labels:
        code = src_tax.canonical(lab)
        if code not in mapping:
            missing.add(code)
        else:
            out.append(mapping[code])
    if missing:
        hint = " (use ham_to_isic8 with the ISIC 2019 ground truth to split akiec)" if "akiec" in missing else ""
        raise LabelMappingError(f"Labels {sorted(missing)} of {src!r} have no counterpart in {dst!r}{hint}")
    return out


def onehot_to_labels(frame: pd.DataFrame, classes: Iterable[str], id_column: str = "image") -> pd.Series:
    """Decode an ISIC-style one-hot table (0/1 or probabilities) into one class code per row.

    Rows whose maximum is not exactly one positive column (all zero, or several ones) raise, naming the rows.
    """
    classes = list(classes)
    missing = [c for c in classes if c not in frame.columns]
    if missing:
        raise LabelMappingError(f"One-hot table lacks columns {missing}; it has {list(frame.columns)}")
    values = frame[classes].astype(float).to_numpy()
    positives = (values >= 0.5).sum(axis=1)
    bad = frame.loc[positives != 1, id_column].tolist() if id_column in frame else list(frame.index[positives != 1])
    if bad:
        raise LabelMappingError(f"{len(bad)} rows are not one-hot (first: {bad[:5]})")
    return pd.Series([classes[i] for i in values.argmax(axis=1)], index=frame.index)


def ham_to_isic8(table: pd.DataFrame, ground_truth_csv: str, image_column: str = "image_id") -> pd.Series:
    """ISIC 2019 8-class labels for HAM10000 rows by joining ``image_id`` to the ISIC 2019 ground truth.

    This is how HAM ``akiec`` splits into AK and SCC. Every row must be found in the ground truth.
    """
    gt = pd.read_csv(ground_truth_csv)
    labels = onehot_to_labels(gt, ISIC8.classes, id_column="image")
    lookup = dict(zip(gt["image"], labels, strict=True))
    ids = table[image_column].astype(str)
    missing = sorted(set(ids) - set(lookup))
    if missing:
        raise LabelMappingError(f"{len(missing)} images are not in {ground_truth_csv} (first: {missing[:5]})")
    return ids.map(lookup)
