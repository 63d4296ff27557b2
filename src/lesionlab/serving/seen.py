"""Which images a model trained or validated on, read from its runs' ``splits.csv``: predictions on those images
look confident for the wrong reason, so the predictor marks them (it never refuses them)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd


def image_id_of(name: str) -> str:
    """The image id a file name stands for: its stem (``ISIC_0024306.jpg`` → ``ISIC_0024306``)."""
    return Path(str(name).replace("\\", "/")).stem


@dataclass(frozen=True)
class SeenImages:
    """Image and lesion ids of the training and validation splits of one run or of every ensemble member."""

    images: frozenset[str]
    lesions: frozenset[str]
    lesion_of: dict[str, str]  # image id → lesion id, for every image the runs list (test images too)

    @classmethod
    def from_split_files(cls, paths: Sequence[Path]) -> SeenImages:
        tables = [pd.read_csv(p, dtype={"image_id": str, "lesion_id": str}) for p in paths]
        table = pd.concat(tables, ignore_index=True)
        used = table[table["split"] != "test"]
        return cls(frozenset(used["image_id"]), frozenset(used["lesion_id"].dropna()),
                   dict(zip(table["image_id"], table["lesion_id"], strict=True)))

    @classmethod
    def for_sources(cls, sources: Sequence[str | Path]) -> SeenImages | None:
        """From the ``splits.csv`` beside each model file (run directories, ``model.pt``, an ``.onnx`` inside a run);
        None when any is missing: then nothing can be said about which images the model saw."""
        files = [(p if p.is_dir() else p.parent) / "splits.csv" for p in map(Path, sources)]
        if not files or not all(f.is_file() for f in files):
            return None
        return cls.from_split_files(files)

    def reason(self, name: str, lesion_id: str | None = None) -> str:
        """Why ``name`` counts as seen (by image id, or by lesion id: given, else looked up), or "" when it does not."""
        image_id = image_id_of(name)
        if image_id in self.images:
            return f"image {image_id} was in the model's training/validation data"
        lesion = lesion_id or self.lesion_of.get(image_id)
        if lesion is not None and lesion in self.lesions:
            return f"lesion {lesion} (of image {image_id}) was in the model's training/validation data"
        return ""
