"""The DermaMNIST loader (official MedMNIST ``.npz`` layout) and the DermaMNIST-Corrected builder."""

from __future__ import annotations

import builtins
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lesionlab.config import DataConfig
from lesionlab.data.cache import build_or_load
from lesionlab.data.datasets import DATASETS, load_dataset
from lesionlab.data.dermamnist import dermamnist_filename
from lesionlab.data.dermamnist_build import build_dermamnist
from lesionlab.data.prepare import prepare_data
from lesionlab.data.table import DatasetError
from lesionlab.data.taxonomy import HAM7

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "ham10000"
COUNTS = {"train": 7, "val": 3, "test": 4}


def _write_official(folder: Path, size: int = 28, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in COUNTS.items():
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % 7).astype(np.uint8).reshape(-1, 1)
    folder.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(folder / dermamnist_filename(size), **arrays)
    return arrays


def test_registered() -> None:
    assert "dermamnist" in DATASETS


def test_load_official_npz(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    arrays = _write_official(tmp_path / "dermamnist")
    ds = load_dataset(DataConfig(dataset="dermamnist", root=str(tmp_path)))
    assert ds.class_names == ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc") == HAM7.classes
    assert len(ds) == sum(COUNTS.values())
    t = ds.table
    assert t["official_split"].value_counts().to_dict() == COUNTS
    for split in COUNTS:
        rows = t[t["official_split"] == split]
        assert rows["image_id"].tolist() == [f"dermamnist-{split}-{i}" for i in range(COUNTS[split])]
        expected = [HAM7.classes[i] for i in arrays[f"{split}_labels"].reshape(-1)]
        assert rows["label"].tolist() == expected
    assert (t["lesion_id"] == t["image_id"]).all()
    assert "not lesion-disjoint" in caplog.text


@pytest.mark.parametrize("options", [{"size": "64"}, {"file": "OTHER"}])
def test_size_and_file_options(tmp_path: Path, options: dict) -> None:
    _write_official(tmp_path / "dermamnist", size=64)
    if "file" in options:
        moved = tmp_path / "elsewhere.npz"
        (tmp_path / "dermamnist" / "dermamnist_64.npz").rename(moved)
        options = {"file": str(moved)}
    ds = load_dataset(DataConfig(dataset="dermamnist", root=str(tmp_path), options=options))
    assert len(ds) == sum(COUNTS.values())


def test_cache_reads_npz_pixels_exactly(tmp_path: Path) -> None:
    arrays = _write_official(tmp_path / "dermamnist")
    cfg = DataConfig(dataset="dermamnist", root=str(tmp_path), crop="full", image_size=28,
                     cache_dir=str(tmp_path / "cache"))
    data = prepare_data(cfg, progress=False, with_split=False)
    t = data.table
    for split in COUNTS:
        pos = np.flatnonzero(t["official_split"].to_numpy() == split)
        got = np.stack([data.images[data.rows[p]] for p in pos])
        np.testing.assert_array_equal(got, arrays[f"{split}_images"])


def test_missing_file_message(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"dermamnist\.npz.*zenodo.*download=true"):
        load_dataset(DataConfig(dataset="dermamnist", root=str(tmp_path)))


def test_bad_options(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="must be one of"):
        load_dataset(DataConfig(dataset="dermamnist", root=str(tmp_path), options={"size": 32}))
    with pytest.raises(DatasetError, match="variant"):
        load_dataset(DataConfig(dataset="dermamnist", root=str(tmp_path), options={"variant": "c"}))


def test_download_without_medmnist_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_medmnist(name: str, *args: object, **kwargs: object) -> object:
        if name == "medmnist":
            raise ImportError("No module named 'medmnist'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_medmnist)
    with pytest.raises(DatasetError, match=r"pip install lesionlab\[dermamnist\]"):
        load_dataset(DataConfig(dataset="dermamnist", root=str(tmp_path), options={"download": "true"}))


def test_wrong_layout(tmp_path: Path) -> None:
    np.savez(tmp_path / "x.npz", images=np.zeros((2, 28, 28, 3), np.uint8))
    with pytest.raises(DatasetError, match="lacks the MedMNIST arrays"):
        load_dataset(DataConfig(dataset="dermamnist", root=str(tmp_path), options={"file": str(tmp_path / "x.npz")}))


@pytest.fixture
def small_ham(tmp_path: Path) -> tuple[Path, Path]:
    """~200 real HAM10000 images (symlinked) + their metadata rows, under a tmp data root."""
    if not (SHARED / "images_200x150").is_dir():
        pytest.skip("needs ../shared/data beside the checkout")
    meta = pd.read_csv(SHARED / "HAM10000_metadata.csv")
    lesions = meta.groupby("dx")["lesion_id"].apply(lambda s: s.drop_duplicates().head(30)).explode()
    subset = meta[meta["lesion_id"].isin(lesions)].head(200)
    root = tmp_path / "data"
    (root / "ham10000").mkdir(parents=True)
    subset.to_csv(root / "ham10000" / "HAM10000_metadata.csv", index=False)
    images = tmp_path / "images"
    images.mkdir()
    for image_id in subset["image_id"]:
        (images / f"{image_id}.jpg").symlink_to(SHARED / "images_200x150" / f"{image_id}.jpg")
    return root, images


@pytest.mark.realdata
def test_build_dermamnist_corrected(tmp_path: Path, small_ham: tuple[Path, Path]) -> None:
    root, images = small_ham
    paths = build_dermamnist(root, sizes=(28, 32), image_dir=images, seed=0, cache_dir=tmp_path / "cache",
                             progress=False)
    out = root / "dermamnist"
    assert paths == [out / "dermamnist_corrected_28.npz", out / "dermamnist_corrected_32.npz",
                     out / "dermamnist_corrected_split.csv"]
    split_csv = pd.read_csv(paths[-1])
    assert len(split_csv) == 200
    assert split_csv.groupby("lesion_id")["split"].nunique().max() == 1  # lesion-disjoint
    fractions = split_csv["split"].value_counts(normalize=True)
    assert fractions["train"] > fractions["test"] > fractions["val"] > 0
    for size, path in ((28, paths[0]), (32, paths[1])):
        with np.load(path) as npz:
            assert sorted(npz.files) == sorted(f"{s}_{k}" for s in COUNTS for k in ("images", "labels"))
            total = 0
            for s in ("train", "val", "test"):
                imgs, labels = npz[f"{s}_images"], npz[f"{s}_labels"]
                assert imgs.shape == (len(labels), size, size, 3) and imgs.dtype == np.uint8
                assert labels.shape[1] == 1 and labels.dtype == np.uint8
                assert labels.min() >= 0 and labels.max() <= 6
                names = split_csv.loc[split_csv["split"] == s, "label"]
                assert [HAM7.classes[i] for i in labels.reshape(-1)] == names.tolist()
                total += len(labels)
            assert total == 200

    # the loader reads it back with the HAM image and lesion ids; pixels match the cached `full` crop
    ds = load_dataset(DataConfig(dataset="dermamnist", root=str(root), options={"variant": "corrected"}))
    assert ds.name == "dermamnist-corrected"
    assert sorted(ds.table["image_id"]) == sorted(split_csv["image_id"])
    assert (ds.table["lesion_id"].to_numpy() == split_csv["lesion_id"].to_numpy()).all()
    ham = load_dataset(DataConfig(dataset="ham10000", root=str(root), image_dir=str(images)))
    cached = build_or_load(ham.table, dataset=ham.name, crop="full", size=28, cache_dir=tmp_path / "cache",
                           progress=False)
    assert not cached.built  # the builder filled the shared cache
    first = split_csv["image_id"].iloc[0]
    with np.load(paths[0]) as npz:
        np.testing.assert_array_equal(npz["train_images"][0],
                                      cached.images[int(np.flatnonzero(ham.table["image_id"] == first)[0])])
