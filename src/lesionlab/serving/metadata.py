"""Optional patient metadata sent with an image (age, sex, anatomical site), validated before any inference."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from lesionlab.errors import LesionLabError

#: Accepted sexes; ``unknown`` is what the datasets use for a missing value.
SEXES: tuple[str, ...] = ("female", "male", "unknown")

#: Anatomical sites: HAM10000 ``localization`` values plus ISIC 2019 ``anatom_site_general`` values.
SITES: tuple[str, ...] = (
    "abdomen", "acral", "anterior torso", "back", "chest", "ear", "face", "foot", "genital", "hand",
    "head/neck", "lateral torso", "lower extremity", "neck", "oral/genital", "palms/soles", "posterior torso",
    "scalp", "trunk", "upper extremity", "unknown",
)

MAX_AGE = 120


class MetadataError(LesionLabError, ValueError):
    """A metadata value is out of range or unknown; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True)
class PatientMetadata:
    """Validated metadata; every field is optional (``None`` = not given)."""

    age: float | None = None
    sex: str | None = None
    site: str | None = None

    def __post_init__(self) -> None:
        if self.age is not None and (not math.isfinite(self.age) or not 0 <= self.age <= MAX_AGE):
            raise MetadataError("age", f"must be a number of years between 0 and {MAX_AGE}, got {self.age:g}")
        if self.sex is not None and self.sex not in SEXES:
            raise MetadataError("sex", f"must be one of {', '.join(SEXES)}; got {self.sex!r}")
        if self.site is not None and self.site not in SITES:
            raise MetadataError("site", f"must be one of {', '.join(SITES)}; got {self.site!r}")

    @classmethod
    def parse(cls, age: Any = None, sex: Any = None, site: Any = None) -> PatientMetadata:
        """Normalise loosely typed input (form fields, JSON): blanks are ``None``, text is lower-cased."""
        return cls(age=_parse_age(age), sex=_parse_text(sex), site=_parse_text(site))

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None) -> PatientMetadata:
        data = dict(data or {})
        unknown = sorted(set(data) - {"age", "sex", "site"})
        if unknown:
            raise MetadataError(unknown[0], "unknown metadata field; use age, sex and site")
        return cls.parse(**data)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @property
    def empty(self) -> bool:
        return not self.as_dict()


def _parse_text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip().lower()
    return text or None


def _parse_age(value: Any) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise MetadataError("age", f"must be a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise MetadataError("age", f"must be a number, got {value!r}") from None
