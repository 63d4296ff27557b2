"""Identifiers that mean the same image, lesion or patient whatever distribution (or merged source) they arrive through.

The ISIC archive numbers images (``ISIC_0024306``), HAM10000 and BCN lesions (``HAM_0000118``, ``BCN_0000123``) and
ISIC 2020 lesions and patients (``IL_…``, ``IP_…``) globally: HAM10000 images are ISIC 2018 and 2019 images with the
same id, ISIC 2019 names some ``ISIC_0000000_downsampled``, a merged dataset may prefix them (``ham:ISIC_…``). Such
ids are reduced to their global core; any other id is local to its dataset and compared as written.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import pandas as pd

GLOBAL_ID = re.compile(r"(?<![A-Za-z0-9])((?:ISIC|HAM|BCN|IL|IP)_\d{7})(?!\d)")
#: The id columns the seen-data guard compares: an image, its lesion, its patient.
ID_KINDS = ("image_id", "lesion_id", "patient_id")


def canonical_id(value: object) -> str | None:
    """The global core of an id (``ham:ISIC_0024306_downsampled`` → ``ISIC_0024306``), else the id itself."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    text = str(value).strip()
    if text in ("", "nan", "None", "<NA>"):
        return None
    match = GLOBAL_ID.search(text)
    return match.group(1) if match else text


def canonical_ids(values: Iterable[object]) -> pd.Series:
    return pd.Series([canonical_id(v) for v in values], dtype=object)
