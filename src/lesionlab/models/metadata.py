"""Patient-metadata fusion: age, sex and anatomical site encoded as numbers and fed through a small MLP whose output
is concatenated with the image features before the head.

Encoding (:class:`MetadataSpec`, fitted on the training split and stored in the checkpoint): age → ``(age - mean) /
std`` plus a missing flag (0 when missing); sex and site → one-hot with an explicit ``unknown`` category that also
takes values never seen in training. Every dataset's table has ``age``/``sex``/``site`` columns (HAM10000
``localization``, ISIC 2019 ``age_approx``/``anatom_site_general`` and the generic CSV's aliases are renamed by the
loaders), so the same spec works for all of them. During training :class:`MetadataBranch` re-encodes each field as
missing with probability ``field_dropout`` so the model copes with absent metadata at inference.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from lesionlab.config import ModelConfig

logger = logging.getLogger(__name__)

FIELDS = ("age", "sex", "site")
UNKNOWN = "unknown"
#: Other names a raw metadata record may use for a field (the datasets' own column names).
ALIASES = {"age": ("age", "age_approx"), "sex": ("sex", "gender"),
           "site": ("site", "localization", "anatom_site_general", "anatom_site", "location")}
_SEX_WORDS = {"m": "male", "male": "male", "man": "male", "f": "female", "female": "female", "woman": "female"}


def _clean_category(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return UNKNOWN
    text = str(value).strip().lower()
    return UNKNOWN if text in ("", "nan", "none", "null", "na") else text


def _clean_sex(value: object) -> str:
    return _SEX_WORDS.get(_clean_category(value), UNKNOWN)


def _clean_age(value: object) -> float:
    try:
        age = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan
    return age if 0 <= age <= 120 else math.nan


@dataclass(frozen=True)
class MetadataSpec:
    """How raw metadata becomes the branch's input vector; JSON-friendly so it travels in the checkpoint."""

    fields: tuple[str, ...] = FIELDS
    age_mean: float = 50.0
    age_std: float = 20.0
    sexes: tuple[str, ...] = ("female", "male", UNKNOWN)
    sites: tuple[str, ...] = (UNKNOWN,)
    layout: dict[str, tuple[int, int]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        bad = [f for f in self.fields if f not in FIELDS]
        if bad or not self.fields:
            raise ValueError(f"metadata fields must be a non-empty subset of {FIELDS}, got {list(self.fields)}")
        for name, cats in (("sexes", self.sexes), ("sites", self.sites)):
            if UNKNOWN not in cats:
                raise ValueError(f"MetadataSpec.{name} must contain {UNKNOWN!r}")
        widths = {"age": 2, "sex": len(self.sexes), "site": len(self.sites)}
        layout, start = {}, 0
        for f in self.fields:
            layout[f] = (start, start + widths[f])
            start += widths[f]
        object.__setattr__(self, "layout", layout)

    @property
    def dim(self) -> int:
        """Length of an encoded record."""
        return max(end for _, end in self.layout.values())

    @classmethod
    def fit(cls, table: pd.DataFrame, fields: Sequence[str] = FIELDS) -> MetadataSpec:
        """Statistics and categories from (training) rows of a sample table with ``age``/``sex``/``site``."""
        ages = pd.Series([_clean_age(a) for a in table.get("age", pd.Series(dtype=float))], dtype=float).dropna()
        mean = float(ages.mean()) if len(ages) else 50.0
        std = float(ages.std()) if len(ages) > 1 and ages.std() > 0 else 20.0
        sites = sorted({_clean_category(s) for s in table.get("site", [])} - {UNKNOWN})
        spec = cls(tuple(fields), mean, std, ("female", "male", UNKNOWN), (*sites, UNKNOWN))
        logger.info("Metadata spec: fields %s, age %.1f±%.1f, %d sites, %d inputs", list(fields), mean, std,
                    len(spec.sites), spec.dim)
        return spec

    def missing_vector(self) -> np.ndarray:
        """The encoding of a record with every field missing."""
        return self.encode([None])[0]

    def encode(self, records: pd.DataFrame | Sequence[Mapping[str, Any] | None]) -> np.ndarray:
        """``(N, dim)`` float32 for a sample table or raw records (dicts; ``None`` or absent keys = missing).

        Unseen categories count as ``unknown``; impossible ages (< 0, > 120, not a number) as missing.
        """
        rows = records.to_dict("records") if isinstance(records, pd.DataFrame) else list(records)
        out = np.zeros((len(rows), self.dim), dtype=np.float32)
        sex_index = {s: i for i, s in enumerate(self.sexes)}
        site_index = {s: i for i, s in enumerate(self.sites)}
        for r, record in enumerate(rows):
            values = _lookup(record or {})
            if "age" in self.layout:
                start, _ = self.layout["age"]
                age = _clean_age(values["age"])
                if math.isnan(age):
                    out[r, start + 1] = 1.0
                else:
                    out[r, start] = (age - self.age_mean) / self.age_std
            if "sex" in self.layout:
                out[r, self.layout["sex"][0] + sex_index.get(_clean_sex(values["sex"]), sex_index[UNKNOWN])] = 1.0
            if "site" in self.layout:
                site = _clean_category(values["site"])
                out[r, self.layout["site"][0] + site_index.get(site, site_index[UNKNOWN])] = 1.0
        return out

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("layout")
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MetadataSpec:
        d = dict(data)
        for key in ("fields", "sexes", "sites"):
            if key in d:
                d[key] = tuple(d[key])
        return cls(**d)


def _lookup(record: Mapping[str, Any]) -> dict[str, Any]:
    """The value of each field under its first alias present in ``record`` (None when absent)."""
    lower = {str(k).lower(): v for k, v in record.items()}
    return {f: next((lower[a] for a in ALIASES[f] if a in lower), None) for f in FIELDS}


class MetadataBranch(nn.Module):
    """Encoded metadata ``(B, spec.dim)`` → ``(B, out_features)``: Linear-BN-ReLU-Dropout twice.

    In training mode each field of each sample is replaced by its missing encoding with probability
    ``field_dropout`` (metadata dropout), so predictions degrade gracefully when fields are absent.
    """

    def __init__(self, spec: MetadataSpec, hidden: int = 64, out_features: int = 64, drop_rate: float = 0.2,
                 field_dropout: float = 0.1) -> None:
        super().__init__()
        if not 0 <= field_dropout < 1:
            raise ValueError(f"field_dropout must lie in [0, 1), got {field_dropout}")
        self.spec = spec
        self.field_dropout = field_dropout
        self.out_features = out_features
        self.register_buffer("missing", torch.from_numpy(spec.missing_vector()), persistent=False)
        self.mlp = nn.Sequential(
            nn.Linear(spec.dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True), nn.Dropout(drop_rate),
            nn.Linear(hidden, out_features), nn.BatchNorm1d(out_features), nn.ReLU(inplace=True),
        )

    def missing_batch(self, batch_size: int) -> torch.Tensor:
        """Encoded "nothing known" metadata for ``batch_size`` samples."""
        return self.missing.unsqueeze(0).expand(batch_size, -1)

    def drop_fields(self, meta: torch.Tensor) -> torch.Tensor:
        """Replace each field by its missing encoding with probability ``field_dropout`` (per sample and field)."""
        out = meta.clone()
        for start, end in self.spec.layout.values():
            hit = torch.rand(meta.shape[0], 1, device=meta.device) < self.field_dropout
            out[:, start:end] = torch.where(hit, self.missing[start:end].to(meta.dtype), meta[:, start:end])
        return out

    def forward(self, meta: torch.Tensor) -> torch.Tensor:
        if meta.ndim != 2 or meta.shape[1] != self.spec.dim:
            raise ValueError(f"metadata must be (batch, {self.spec.dim}), got {tuple(meta.shape)}")
        if self.training and self.field_dropout > 0:
            meta = self.drop_fields(meta)
        return self.mlp(meta)


def encode_split_metadata(cfg: ModelConfig, table: pd.DataFrame) -> tuple[MetadataSpec | None, np.ndarray | None]:
    """For ``model.metadata``: a spec fitted on the table's training rows and the encoding of every row."""
    if not cfg.metadata:
        return None, None
    train = table[table["split"] == "train"] if "split" in table else table
    spec = MetadataSpec.fit(train, cfg.metadata_fields)
    return spec, spec.encode(table)


def sample_metadata(encoded: np.ndarray, spec: MetadataSpec, positions: np.ndarray, n_synthetic: int) -> np.ndarray:
    """Metadata for a resampled training set: the rows at ``positions``, then "missing" for synthetic samples."""
    missing = np.repeat(spec.missing_vector()[None], n_synthetic, axis=0)
    return np.concatenate([encoded[np.asarray(positions, dtype=np.int64)], missing]).astype(np.float32)
