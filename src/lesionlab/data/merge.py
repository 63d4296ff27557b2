"""Merged datasets: several sources in one sample table with a ``source`` column and a common taxonomy.

Use ``data.dataset: merged`` with ``data.options``::

    sources:                      # each entry: a MergeSourceConfig (dataset, name, root, image_dir, csv, options,
      - {dataset: ham10000}       #   taxonomy, prefix_ids)
      - {dataset: isic2019, name: isic, image_dir: /data/isic2019/images}
    taxonomy: triage              # the common label space (needed when the sources' taxonomies differ)
    duplicates: keep-first        # an image id in several sources: keep-first (logged) or error

The merged table goes through :func:`lesionlab.data.prepare.prepare_data` like any dataset, so the split is
lesion-disjoint *across* sources: lesion (and patient) ids are shared between sources unless ``prefix_ids`` marks a
source's ids as local. Because sources differ in cameras, resolution and class mix, :mod:`lesionlab.data.source_check`
tests whether a quick classifier can tell them apart.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pandas as pd

from lesionlab.config import ConfigError, DataConfig, from_dict
from lesionlab.data.loaders import DATASETS, DatasetRequest
from lesionlab.data.table import DatasetError, LesionDataset
from lesionlab.data.taxonomy import get_taxonomy
from lesionlab.registry import Registry

logger = logging.getLogger(__name__)

#: What to do with an image id present in several sources: ``keep-first`` or ``error``.
DUPLICATE_POLICIES: Registry[str] = Registry("duplicate policy")
DUPLICATE_POLICIES.add("keep-first", "keep-first", help="keep the first source's copy, drop later ones (logged)")
DUPLICATE_POLICIES.add("error", "error", help="refuse to merge sources that share image ids")


@dataclass
class MergeSourceConfig:
    """One source of ``data.dataset: merged`` (listed under ``data.options.sources``)."""

    dataset: str = "ham10000"
    name: str | None = None  # value of the ``source`` column; default: the dataset name
    root: str | None = None  # default: the merged config's data.root
    image_dir: str | None = None
    csv: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    taxonomy: str | None = None  # express this source in this taxonomy before merging
    prefix_ids: bool = False  # prefix image/lesion/patient ids with the source name (ids local to the source)


def _prefixed(dataset: LesionDataset, prefix: str) -> LesionDataset:
    t = dataset.table.copy()
    t["image_id"] = prefix + ":" + t["image_id"].astype(str)
    t["lesion_id"] = prefix + ":" + t["lesion_id"].astype(str)
    known = t["patient_id"].notna()
    t["patient_id"] = t["patient_id"].astype(object)
    t.loc[known, "patient_id"] = prefix + ":" + t.loc[known, "patient_id"].astype(str)
    return replace(dataset, table=t)


def common_taxonomy(datasets: Sequence[LesionDataset], requested: str | None) -> str:
    """The label space to merge in: ``requested``, else the one all sources share (an error otherwise)."""
    if requested:
        get_taxonomy(requested)
        return requested
    names = sorted({d.taxonomy.name for d in datasets})
    if len(names) != 1:
        raise ConfigError(f"merged sources use different taxonomies {names}; set data.options.taxonomy to a common "
                          "one they all map to (e.g. triage, or ham7 for ham7 + isic8)")
    return names[0]


def merge_datasets(datasets: Sequence[LesionDataset], sources: Sequence[str], *, taxonomy: str | None = None,
                   duplicates: str = "keep-first", prefix: Sequence[bool] | None = None) -> LesionDataset:
    """One :class:`LesionDataset` from several, relabelled into a common taxonomy, ``source`` set per row."""
    if len(datasets) < 2:
        raise ConfigError("a merged dataset needs at least two sources (data.options.sources)")
    if len(set(sources)) != len(sources):
        raise ConfigError(f"merged source names must be unique (set sources[].name), got {list(sources)}")
    policy = DUPLICATE_POLICIES.get(duplicates)
    target = common_taxonomy(datasets, taxonomy)
    tables = []
    for i, (ds, name) in enumerate(zip(datasets, sources, strict=True)):
        ds = ds.relabel(target)
        if prefix is not None and prefix[i]:
            ds = _prefixed(ds, name)
        tables.append(ds.table.assign(source=name))
    merged = pd.concat(tables, ignore_index=True)
    dup = merged["image_id"].duplicated(keep="first")
    if dup.any():
        shared = merged.loc[dup, ["image_id", "source"]]
        msg = (f"{int(dup.sum())} image ids occur in more than one source (first: "
               f"{shared['image_id'].head(5).tolist()} in {sorted(set(shared['source']))})")
        if policy == "error":
            raise DatasetError(msg + "; set data.options.duplicates=keep-first to keep the first source's copy, or "
                               "prefix_ids=true on a source whose ids are local to it")
        logger.warning("%s; keeping the first source's copy", msg)
        merged = merged[~dup].reset_index(drop=True)
    counts = merged["source"].value_counts().to_dict()
    logger.info("Merged %d sources into %d images (%s), taxonomy %s", len(datasets), len(merged), counts, target)
    return LesionDataset("merged", get_taxonomy(target), merged)


def source_configs(options: dict[str, Any], defaults: DatasetRequest) -> list[tuple[str, DataConfig, bool]]:
    """``data.options.sources`` → (source name, :class:`DataConfig`, prefix_ids) per source, validated."""
    raw = options.get("sources")
    if not isinstance(raw, list | tuple) or not raw:
        raise ConfigError("data.dataset=merged needs data.options.sources: a list of {dataset: NAME, ...} mappings")
    out = []
    for i, item in enumerate(raw):
        where = f"data.options.sources[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(f"{where} must be a mapping like {{dataset: ham10000}}, got {item!r}")
        src = from_dict(MergeSourceConfig, item, where)
        if src.dataset == "merged":
            raise ConfigError(f"{where}.dataset may not itself be 'merged'")
        DATASETS.get(src.dataset)
        cfg = DataConfig(dataset=src.dataset, root=src.root or str(defaults.root), image_dir=src.image_dir,
                         csv=src.csv, options=dict(src.options), taxonomy=src.taxonomy,
                         skip_bad=defaults.skip_missing)
        out.append((src.name or src.dataset, cfg, src.prefix_ids))
    return out


@DATASETS.register("merged", help="several datasets in one table (options: sources, taxonomy, duplicates)")
def load_merged(req: DatasetRequest) -> LesionDataset:
    unknown = set(req.options) - {"sources", "taxonomy", "duplicates"}
    if unknown:
        raise ConfigError(f"unknown data.options {sorted(unknown)} for the merged dataset; valid: sources, taxonomy, "
                          "duplicates")
    specs = source_configs(req.options, req)
    if req.load is None:
        raise ConfigError("the merged dataset is loaded through lesionlab.data.datasets.load_dataset")
    datasets = [req.load(cfg) for _, cfg, _ in specs]
    return merge_datasets(datasets, [name for name, _, _ in specs], taxonomy=req.options.get("taxonomy"),
                          duplicates=str(req.options.get("duplicates", "keep-first")),
                          prefix=[p for _, _, p in specs])
