"""Open a trained run — or an ensemble of runs — for the evaluation tools: its model, preprocessing, config, the
images it trained or validated on (never to be scored) and its held-out test split, re-derived and checked."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
from torch import nn

from lesionlab.config import DataConfig, ExperimentConfig, load_run_config
from lesionlab.data.identity import ID_KINDS, canonical_ids
from lesionlab.data.prepare import PreparedData, prepare_data, with_validation_in_training
from lesionlab.data.roots import data_root_hint, resolve_run_data_root
from lesionlab.data.table import DatasetError
from lesionlab.errors import EvaluationInputError
from lesionlab.models.checkpoint import Preprocessing
from lesionlab.models.ensemble import manifest_path, read_manifest

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedRun:
    """A run directory (or ensemble folder) with its model as the predictor would load it."""

    root: Path
    model: nn.Module
    prep: Preprocessing
    members: tuple[Path, ...]  # member run directories (the run itself for a single run)
    split_files: tuple[Path, ...]  # every member's splits.csv (images used for training/validation)

    @property
    def is_ensemble(self) -> bool:
        return manifest_path(self.root) is not None

    def config(self) -> ExperimentConfig:
        """The resolved config the run (or the cross-validation) was trained with."""
        path = self.root / "config.yaml"
        if not path.is_file():
            path = self.members[0] / "config.yaml"
        if not path.is_file():
            raise EvaluationInputError(f"no config.yaml in {self.root}: cannot re-create its data splits")
        return load_run_config(path)


def member_dirs(root: Path) -> tuple[Path, ...]:
    """The run directories of an ensemble folder's members (the folder itself for a single run)."""
    manifest = manifest_path(root)
    if manifest is None:
        return (root,)
    return tuple(m if m.is_dir() else m.parent for m in read_manifest(manifest)["members"])


def load_run(path: str | Path) -> LoadedRun:
    """A run directory, its ``model.pt``, or an ensemble folder / ``ensemble.json`` (loaded like ``predict`` does)."""
    from lesionlab.builtin.registry import resolve_model_ref
    from lesionlab.serving.model_loading import load_artifact

    path = Path(resolve_model_ref(path))  # 'builtin' / a built-in name → the packaged model's folder
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist (expected a run directory or an ensemble folder)")
    root = path.parent if path.is_file() else path
    model, prep, _ = load_artifact(path)
    members = member_dirs(root)
    split_files = tuple(m / "splits.csv" for m in members)
    missing = [str(p) for p in split_files if not p.is_file()]
    if missing:
        raise EvaluationInputError(f"cannot tell which images {path} was trained on: missing {missing}")
    return LoadedRun(root, model, prep, members, split_files)


def seen_ids(split_files: Sequence[Path]) -> dict[str, set[str]]:
    """Canonical image, lesion and patient ids any of the runs used for training or validation."""
    seen: dict[str, set[str]] = {kind: set() for kind in ID_KINDS}
    for path in split_files:
        splits = pd.read_csv(path, dtype=str)
        used = splits[splits["split"] != "test"]
        for kind in ID_KINDS:
            if kind in used:
                seen[kind] |= {i for i in canonical_ids(used[kind]) if i is not None}
    return seen


def seen_by_kind(table: pd.DataFrame, split_files: Sequence[Path]) -> pd.DataFrame:
    """One boolean column per id kind: does this row's image, lesion or patient appear in a run's train/val split?

    Ids are compared in canonical form (:mod:`lesionlab.data.identity`), so an HAM10000 image is recognised when it
    comes back through ISIC 2018/2019, with a ``_downsampled`` suffix or a merged-source prefix.
    """
    seen = seen_ids(split_files)
    out = {}
    for kind in ID_KINDS:
        values = canonical_ids(table[kind]) if kind in table else pd.Series([None] * len(table), dtype=object)
        out[kind] = values.isin(seen[kind]).to_numpy() & values.notna().to_numpy()
    return pd.DataFrame(out, index=table.index)


def seen_in_splits(table: pd.DataFrame, split_files: Sequence[Path]) -> np.ndarray:
    """Rows whose image, lesion or patient any of the runs used for training or validation."""
    return seen_by_kind(table, split_files).any(axis=1).to_numpy()


def describe_seen(flags: pd.DataFrame) -> str:
    """"3 by image id, 2 more by lesion id" — which kind of id matched, each row counted once."""
    parts, counted = [], np.zeros(len(flags), dtype=bool)
    for kind in ID_KINDS:
        new = flags[kind].to_numpy() & ~counted
        if new.any():
            parts.append(f"{int(new.sum())} {'more ' if counted.any() else ''}by {kind.replace('_', ' ')}")
        counted |= new
    return ", ".join(parts)


def run_data_config(data_cfg: DataConfig, data_root: str | None, stored_root: str | None) -> DataConfig:
    """``data_cfg`` with its root chosen as ``--data-root`` > ``$LESIONLAB_DATA`` > the run's stored root."""
    root, source = resolve_run_data_root(data_root, stored_root)
    logger.info("Data root %s (from %s)", root, source)
    return replace(data_cfg, root=str(root))


def load_run_dataset(data_cfg: DataConfig, data_root: str | None, stored_root: str | None, *, progress: bool = False,
                     with_split: bool = True) -> tuple[DataConfig, PreparedData]:
    """:func:`prepare_data` for a post-hoc command (the data config it used, the data); a not-found message names
    all three data-root sources."""
    data_cfg = run_data_config(data_cfg, data_root, stored_root)
    try:
        return data_cfg, prepare_data(data_cfg, progress=progress, with_split=with_split)
    except DatasetError as exc:
        raise DatasetError(exc.problem, data_root_hint(data_root, stored_root)) from None


def prepare_run_data(run: LoadedRun, data_root: str | None = None, progress: bool = False
                     ) -> tuple[ExperimentConfig, PreparedData]:
    """Re-create the run's data and split from its config; refuse when its test split no longer matches.

    The data root is ``data_root`` (``--data-root``) > ``$LESIONLAB_DATA`` > the root stored in the run's config.
    """
    cfg = run.config()
    data_cfg, data = load_run_dataset(cfg.data, data_root, cfg.data.root, progress=progress)
    cfg = replace(cfg, data=data_cfg)
    recorded = pd.read_csv(run.split_files[0], dtype={"image_id": str})
    want = set(recorded.loc[recorded["split"] == "test", "image_id"])
    got = set(data.table.loc[data.table["split"] == "test", "image_id"].astype(str))
    if want != got:
        raise EvaluationInputError(
            f"the data found now give a different test split than {run.split_files[0]} records ({len(got)} vs "
            f"{len(want)} images, {len(want ^ got)} differ): the data or its root changed; pass --data-root")
    for path in run.split_files:  # the test split must be unseen by every member
        seen = seen_in_splits(data.table.iloc[data.indices("test")], [path])
        if seen.any():
            raise EvaluationInputError(f"{int(seen.sum())} test images were used to train or validate {path.parent}")
    if cfg.train.fit_on == "train+val":  # a refit trained on its validation lesions: none is left to fit on
        data = with_validation_in_training(data)
    return cfg, data


def test_arrays(data: PreparedData, max_images: int | None = None, seed: int = 0
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(table positions, uint8 images, targets) of the test split, optionally a class-stratified subset."""
    test = data.indices("test")
    if max_images is not None and max_images < len(test):
        from sklearn.model_selection import train_test_split

        y = data.targets()[test]
        stratify = y if np.bincount(y).max() > 1 and min(np.bincount(y)[np.bincount(y) > 0]) > 1 else None
        test, _ = train_test_split(test, train_size=max_images, stratify=stratify, random_state=seed)
        test = np.sort(test)
    return test, np.asarray(data.images[data.rows[test]]), data.targets()[test]
