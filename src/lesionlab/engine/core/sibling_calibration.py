"""A refit's calibration: the temperature, triage thresholds and unsure threshold that its train-only sibling fitted
on the validation split. A refit (``train.fit_on=train+val``) trains on those validation lesions, so it has none left
to fit them on; the sibling ran the same recipe on the training lesions alone and was calibrated on the rest."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pandas as pd

from lesionlab.config import ConfigError, ExperimentConfig
from lesionlab.data.prepare import PreparedData
from lesionlab.models.checkpoint import Preprocessing, load_model


def _model_file(path: Path) -> Path:
    model_file = path / "model.pt" if path.is_dir() else path
    if not model_file.is_file():
        raise ConfigError(f"train.calibration_from={str(path)!r}: no model.pt there (expected the run directory of "
                          "a finished train-only run of the same recipe)")
    return model_file


def sibling_calibration(source: str, cfg: ExperimentConfig, data: PreparedData) -> Preprocessing:
    """The sibling run's fitted preprocessing, after checking it matches this run's data, split and preprocessing.

    Raises :class:`ConfigError` when the sibling predicts other classes, preprocesses differently, held out other test
    images, or had no validation split of its own (a refit cannot calibrate another refit)."""
    model_file = _model_file(Path(source).expanduser())
    _, prep = load_model(model_file)
    where = f"train.calibration_from={source!r}"
    if tuple(prep.class_names) != tuple(data.dataset.class_names):
        raise ConfigError(f"{where} predicts {list(prep.class_names)}, this run {list(data.dataset.class_names)}")
    for field, ours in (("image_size", cfg.data.image_size), ("crop", cfg.data.crop), ("tta", cfg.eval.tta)):
        if getattr(prep, field) != ours:
            raise ConfigError(f"{where} used {field}={getattr(prep, field)!r}, this run {ours!r}: its temperature "
                              "and thresholds would not fit this model's outputs")
    splits_file = model_file.parent / "splits.csv"
    if not splits_file.is_file():
        raise ConfigError(f"{where}: no splits.csv beside its model.pt, so its validation split is unknown")
    splits = pd.read_csv(splits_file, dtype={"image_id": str})
    if not (splits["split"] == "val").any():
        raise ConfigError(f"{where} had no validation split (is it a refit itself?): nothing was calibrated there")
    their_test = set(splits.loc[splits["split"] == "test", "image_id"])
    our_test = set(data.table.loc[data.table["split"] == "test", "image_id"].astype(str))
    if their_test != our_test:
        raise ConfigError(f"{where} held out other test images ({len(their_test ^ our_test)} differ): use a sibling "
                          "with the same data and data.split")
    return prep


def calibrated_like(prep: Preprocessing, sibling: Preprocessing) -> Preprocessing:
    """``prep`` (this model's input side) with the sibling's output side: temperature, thresholds, unsure rule."""
    rule = f"{sibling.unsure_rule} (fitted for the train-only sibling run)" if sibling.unsure_rule else ""
    return replace(prep, temperature=sibling.temperature, thresholds=dict(sibling.thresholds),
                   unsure_threshold=sibling.unsure_threshold, unsure_rule=rule)


__all__ = ["calibrated_like", "sibling_calibration"]
