"""Label spaces (HAM10000 7-class, ISIC 2019 8-class, 3-level triage priority) and maps between them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import pandas as pd

from lesionlab.errors import LesionLabError
from lesionlab.registry import Registry


class LabelMappingError(LesionLabError, ValueError):
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

#: ISIC 2020's ``diagnosis`` column (most benign images are ``unknown``: only the binary target is known for them).
ISIC2020_DX = Taxonomy(
    name="isic2020",
    classes=("melanoma", "nevus", "seborrheic_keratosis", "lentigo_nos", "lichenoid_keratosis", "solar_lentigo",
             "cafe_au_lait_macule", "atypical_melanocytic_proliferation", "unknown"),
    descriptions={
        "melanoma": "Melanoma", "nevus": "Nevus", "seborrheic_keratosis": "Seborrheic keratosis",
        "lentigo_nos": "Lentigo, not otherwise specified", "lichenoid_keratosis": "Lichenoid keratosis",
        "solar_lentigo": "Solar lentigo", "cafe_au_lait_macule": "Cafe-au-lait macule",
        "atypical_melanocytic_proliferation": "Atypical melanocytic proliferation",
        "unknown": "Benign, diagnosis not recorded",
    },
    aliases={"seborrheic keratosis": "seborrheic_keratosis", "lentigo nos": "lentigo_nos",
             "lichenoid keratosis": "lichenoid_keratosis", "solar lentigo": "solar_lentigo",
             "cafe-au-lait macule": "cafe_au_lait_macule",
             "atypical melanocytic proliferation": "atypical_melanocytic_proliferation"},
)

_DERM7PT_SPELLINGS = {  # class code -> meta.csv spelling
    "basal_cell_carcinoma": "basal cell carcinoma", "blue_nevus": "blue nevus", "clark_nevus": "clark nevus",
    "combined_nevus": "combined nevus", "congenital_nevus": "congenital nevus", "dermal_nevus": "dermal nevus",
    "recurrent_nevus": "recurrent nevus", "reed_or_spitz_nevus": "reed or spitz nevus",
    "dermatofibroma": "dermatofibroma", "lentigo": "lentigo", "melanoma": "melanoma",
    "melanoma_in_situ": "melanoma (in situ)", "melanoma_lt_0.76mm": "melanoma (less than 0.76 mm)",
    "melanoma_0.76_to_1.5mm": "melanoma (0.76 to 1.5 mm)", "melanoma_gt_1.5mm": "melanoma (more than 1.5 mm)",
    "melanoma_metastasis": "melanoma metastasis", "melanosis": "melanosis", "miscellaneous": "miscellaneous",
    "seborrheic_keratosis": "seborrheic keratosis", "vascular_lesion": "vascular lesion",
}

#: Derm7pt's ``diagnosis`` column (melanoma subtypes by Breslow thickness kept apart).
DERM7PT_DX = Taxonomy(
    name="derm7pt",
    classes=tuple(_DERM7PT_SPELLINGS),
    descriptions={code: text[0].upper() + text[1:] for code, text in _DERM7PT_SPELLINGS.items()},
    aliases={text: code for code, text in _DERM7PT_SPELLINGS.items() if text != code},
)

for _t in (HAM7, ISIC8, TRIAGE, ISIC2020_DX, DERM7PT_DX):
    TAXONOMIES.add(_t.name, _t, help=f"{_t.num_classes} classes: {', '.join(_t.classes)}")

_DERM7PT_NEVI = ("blue_nevus", "clark_nevus", "combined_nevus", "congenital_nevus", "dermal_nevus", "recurrent_nevus",
                 "reed_or_spitz_nevus")
_DERM7PT_MELANOMA = ("melanoma", "melanoma_in_situ", "melanoma_lt_0.76mm", "melanoma_0.76_to_1.5mm",
                     "melanoma_gt_1.5mm", "melanoma_metastasis")

# Direct class maps. HAM akiec -> ISIC8 is ambiguous (AK or SCC) and needs the ISIC 2019 ground truth:
# see :func:`ham_to_isic8`.
_MAPS: dict[tuple[str, str], dict[str, str]] = {
    ("isic8", "ham7"): {"MEL": "mel", "NV": "nv", "BCC": "bcc", "AK": "akiec", "SCC": "akiec", "BKL": "bkl",
                        "DF": "df", "VASC": "vasc"},
    ("ham7", "isic8"): {"mel": "MEL", "nv": "NV", "bcc": "BCC", "bkl": "BKL", "df": "DF", "vasc": "VASC"},
    ("ham7", "triage"): {"mel": "P1", "bcc": "P1", "akiec": "P2", "nv": "P2", "bkl": "P3", "df": "P3", "vasc": "P3"},
    ("isic8", "triage"): {"MEL": "P1", "BCC": "P1", "SCC": "P1", "AK": "P2", "NV": "P2", "BKL": "P3", "DF": "P3",
                          "VASC": "P3"},
    # Partial maps: a diagnosis without a counterpart (ISIC 2020 "unknown", Derm7pt "miscellaneous") stays outside
    # the target taxonomy; evaluations report such images instead of dropping them silently.
    ("isic2020", "ham7"): {"melanoma": "mel", "nevus": "nv", "seborrheic_keratosis": "bkl", "lentigo_nos": "bkl",
                           "lichenoid_keratosis": "bkl", "solar_lentigo": "bkl"},
    ("isic2020", "isic8"): {"melanoma": "MEL", "nevus": "NV", "seborrheic_keratosis": "BKL", "lentigo_nos": "BKL",
                            "lichenoid_keratosis": "BKL", "solar_lentigo": "BKL"},
    ("isic2020", "triage"): {"melanoma": "P1", "nevus": "P2", "seborrheic_keratosis": "P3", "lentigo_nos": "P3",
                             "lichenoid_keratosis": "P3", "solar_lentigo": "P3", "cafe_au_lait_macule": "P3"},
    ("derm7pt", "ham7"): {"basal_cell_carcinoma": "bcc", **dict.fromkeys(_DERM7PT_NEVI, "nv"),
                          **dict.fromkeys(_DERM7PT_MELANOMA, "mel"), "dermatofibroma": "df", "lentigo": "bkl",
                          "seborrheic_keratosis": "bkl", "vascular_lesion": "vasc"},
    ("derm7pt", "isic8"): {"basal_cell_carcinoma": "BCC", **dict.fromkeys(_DERM7PT_NEVI, "NV"),
                           **dict.fromkeys(_DERM7PT_MELANOMA, "MEL"), "dermatofibroma": "DF", "lentigo": "BKL",
                           "seborrheic_keratosis": "BKL", "vascular_lesion": "VASC"},
    ("derm7pt", "triage"): {"basal_cell_carcinoma": "P1", **dict.fromkeys(_DERM7PT_NEVI, "P2"),
                            **dict.fromkeys(_DERM7PT_MELANOMA, "P1"), "dermatofibroma": "P3", "lentigo": "P3",
                            "seborrheic_keratosis": "P3", "vascular_lesion": "P3", "melanosis": "P3"},
}

#: Labels with several counterparts in a target taxonomy (HAM akiec is ISIC-8 AK or SCC): never "outside" it.
AMBIGUOUS: dict[tuple[str, str], set[str]] = {("ham7", "isic8"): {"akiec"}}

#: Triage priority (1 = most urgent) of each class code in any taxonomy; unknown/other diagnoses are priority 3.
TRIAGE_PRIORITY: dict[str, int] = {
    **{k: int(v[1]) for k, v in _MAPS[("ham7", "triage")].items()},
    **{k: int(v[1]) for k, v in _MAPS[("isic8", "triage")].items()},
    **{k: int(v[1]) for k, v in _MAPS[("isic2020", "triage")].items()},
    **{k: int(v[1]) for k, v in _MAPS[("derm7pt", "triage")].items()},
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
