"""The isic-archive loader: labels in three taxonomies, near-duplicates grouped within the set and dropped against
other datasets, the per-source split that keeps a source's own split, and the real set's counts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from lesionlab.config import ConfigError, DataConfig, SplitConfig
from lesionlab.data.datasets import load_dataset
from lesionlab.data.near_duplicates import duplicate_groups, file_hashes
from lesionlab.data.prepare import prepare_data
from lesionlab.data.table import DatasetError


def texture(seed: int, size: int = 64) -> np.ndarray:
    """A smooth random image (its perceptual hash is stable under mild re-encoding)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((size, size), Image.BICUBIC))


def write_archive(root: Path, images: dict[str, np.ndarray], labels: dict[str, str]) -> Path:
    folder = root / "isic_archive" / "images_256"
    folder.mkdir(parents=True)
    for name, pixels in images.items():
        Image.fromarray(pixels).save(folder / f"{name}.jpg", quality=90)
    pd.DataFrame({"image": list(labels), "isic2019_image": list(labels), "diagnosis": list(labels.values()),
                  "lesion_id": "", "age_approx": 50, "sex": "female", "anatom_site_general": "back"}).to_csv(
        root / "isic_archive" / "labels.csv", index=False)
    return root


def write_ham_like(folder: Path, n_lesions: int) -> None:
    """A HAM10000-layout folder: metadata CSV + images, two images for every third lesion."""
    (folder / "images_200x150").mkdir(parents=True)
    rows = []
    for i in range(n_lesions):
        for k in range(2 if i % 3 == 0 else 1):
            image_id = f"ISIC_9{i:03d}{k}"
            Image.fromarray(texture(1000 + 2 * i + k, 24)).save(folder / "images_200x150" / f"{image_id}.jpg")
            rows.append({"lesion_id": f"HAM_{i:07d}", "image_id": image_id, "dx": ("mel", "nv", "bkl")[i % 3]})
    pd.DataFrame(rows).to_csv(folder / "HAM10000_metadata.csv", index=False)


def archive(root: Path, **kwargs) -> object:
    options = {"cache_dir": str(root / "cache"), **kwargs.pop("options", {})}
    return load_dataset(DataConfig(dataset="isic-archive", root=str(root), options=options, **kwargs))


def test_labels_map_into_ham7_isic8_and_triage(tmp_path: Path) -> None:
    names = [f"ISIC_000000{i}" for i in range(6)]
    labels = dict(zip(names, ["NV", "MEL", "BKL", "NV", "MEL", "NV"], strict=True))
    write_archive(tmp_path, {n: texture(i) for i, n in enumerate(names)}, labels)
    ds = archive(tmp_path)
    assert ds.taxonomy.name == "isic8"
    assert ds.class_totals()[["MEL", "NV", "BKL"]].tolist() == [2, 3, 1]
    assert archive(tmp_path, taxonomy="ham7").class_totals()[["mel", "nv", "bkl"]].tolist() == [2, 3, 1]
    assert archive(tmp_path, taxonomy="triage").class_totals().to_dict() == {"P1": 2, "P2": 3, "P3": 1}
    assert (ds.table["source"] == "isic-archive").all() and (ds.table["site"] == "back").all()


def test_near_duplicates_share_a_lesion_and_copies_of_other_sets_are_dropped(tmp_path: Path) -> None:
    a, b, c, d = texture(1), texture(2), texture(3), texture(4)
    resampled = np.asarray(Image.fromarray(a).resize((40, 40)).resize((64, 64)))
    images = {"ISIC_A": a, "ISIC_A2": resampled, "ISIC_B": b, "ISIC_C": c, "ISIC_D": d}
    write_archive(tmp_path, images, {k: "NV" for k in images})
    ph2 = tmp_path / "ph2"
    (ph2 / "images_half").mkdir(parents=True)
    Image.fromarray(np.asarray(Image.fromarray(c).resize((96, 96)))).save(ph2 / "images_half" / "IMD001.jpg")
    Image.fromarray(texture(9)).save(ph2 / "images_half" / "IMD002.jpg")
    pd.DataFrame({"image_id": ["IMD001", "IMD002"], "diagnosis": ["melanoma", "common_nevus"]}).to_csv(
        ph2 / "PH2_labels.csv", index=False)
    ds = archive(tmp_path)
    t = ds.table.set_index("image_id")
    assert "ISIC_C" not in t.index  # a copy of a PH2 image (the external test set) is never trained on
    assert t.loc["ISIC_A", "lesion_id"] == t.loc["ISIC_A2", "lesion_id"] == "dup:ISIC_A"
    assert t.loc["ISIC_B", "lesion_id"] != t.loc["ISIC_D", "lesion_id"]
    counts = ds.notes["near_duplicates"]
    assert counts["within_set_images"] == 2 and counts["within_set_groups"] == 1
    assert counts["against_ph2"] == 1 and counts["dropped"] == 1
    assert counts["against_ham10000"] == "not checked (dataset not found)"
    assert ds.summary()["near_duplicates"] == counts
    with pytest.raises(ConfigError, match=r"unknown data.options.*check_against"):
        archive(tmp_path, options={"typo": 1})


def test_missing_files_say_where_to_put_them(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"labels.csv.*images_256"):
        archive(tmp_path)


def test_hashes_are_memoised_and_groups_are_transitive(tmp_path: Path) -> None:
    path = tmp_path / "x.png"
    Image.fromarray(texture(5)).save(path)
    first = file_hashes([path], tmp_path / "cache")
    assert (tmp_path / "cache" / "near-duplicates").is_dir()
    assert np.array_equal(first, file_hashes([path], tmp_path / "cache"))
    h = np.array([[0b0], [0b1111], [0b11111111], [~np.uint64(0)]], dtype=np.uint64)
    assert duplicate_groups(h, max_distance=4).tolist() == [0, 0, 0, 3]  # 0~1 and 1~2 link 0 and 2


def test_per_source_split_keeps_each_sources_own_split(tmp_path: Path) -> None:
    write_ham_like(tmp_path / "ham10000", n_lesions=60)
    names = [f"ISIC_{i:07d}" for i in range(40)]
    write_archive(tmp_path, {n: texture(100 + i) for i, n in enumerate(names)},
                  {n: ("MEL" if i % 3 == 0 else "NV") for i, n in enumerate(names)})
    split = SplitConfig(val=0.2, test=0.2, seed=3)
    alone = prepare_data(DataConfig(dataset="ham10000", root=str(tmp_path), image_size=16, split=split,
                                    cache_dir=str(tmp_path / "cache")), progress=False).table
    merged_cfg = DataConfig(dataset="merged", root=str(tmp_path), image_size=16, cache_dir=str(tmp_path / "cache"),
                            options={"sources": [{"dataset": "ham10000"},
                                                 {"dataset": "isic-archive",
                                                  "options": {"cache_dir": str(tmp_path / "cache")}}],
                                     "taxonomy": "ham7"},
                            split=SplitConfig(val=0.2, test=0.2, seed=3, per_source=True))
    merged = prepare_data(merged_cfg, progress=False).table
    ham = merged[merged["source"] == "ham10000"].set_index("image_id")["split"]
    assert ham.reindex(alone["image_id"]).tolist() == alone["split"].tolist()
    other = merged[merged["source"] == "isic-archive"]
    assert set(other["split"]) == {"train", "val", "test"}
