"""The decoded-image cache on ~30 real images: reuse, invalidation, and unreadable images."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lesionlab.data.cache import BadImagesError, build_or_load, cache_key
from lesionlab.data.crops import get_crop
from lesionlab.data.images import open_image

SIZE = 16


@pytest.fixture
def table(copy_ham_images) -> pd.DataFrame:
    paths = copy_ham_images(30)
    return pd.DataFrame({"image_id": [p.stem for p in paths], "path": [str(p) for p in paths]})


def build(table: pd.DataFrame, cache_dir: Path, **kwargs):
    args = {"dataset": "ham10000", "crop": "center-square", "size": SIZE, "cache_dir": cache_dir, "progress": False}
    return build_or_load(table, **{**args, **kwargs})


def test_build_then_reuse(table: pd.DataFrame, cache_dir: Path) -> None:
    first = build(table, cache_dir)
    assert first.built
    assert first.images.shape == (30, SIZE, SIZE, 3) and first.images.dtype == np.uint8
    assert first.valid.all() and first.failures == []
    assert first.directory.parent == cache_dir
    second = build(table, cache_dir)
    assert not second.built
    assert second.directory == first.directory
    np.testing.assert_array_equal(np.asarray(second.images), np.asarray(first.images))
    assert [p.name for p in cache_dir.iterdir()] == [first.directory.name]  # no temporary folders left behind


@pytest.mark.parametrize("crop", ["center-square", "full", "pad"])
def test_cached_pixels_are_the_cropped_images(table: pd.DataFrame, cache_dir: Path, crop: str) -> None:
    arrays = build(table, cache_dir, crop=crop)
    for i in (0, 13, 29):
        expected = np.asarray(get_crop(crop)(open_image(table["path"][i]), SIZE))
        np.testing.assert_array_equal(arrays.images[i], expected)
    assert len({arrays.images[i].tobytes() for i in range(30)}) == 30  # rows are not all the same image


def _touch(path: Path) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))


def _rewrite(path: Path) -> None:
    from PIL import Image

    Image.new("RGB", (200, 150), (0, 200, 0)).save(path, quality=90)


@pytest.mark.parametrize(("edit", "row"), [(_touch, 0), (_touch, 29), (_rewrite, 7)])
def test_edited_image_invalidates(table: pd.DataFrame, cache_dir: Path, edit, row: int) -> None:
    first = build(table, cache_dir)
    edit(Path(table["path"][row]))
    second = build(table, cache_dir)
    assert second.built
    assert second.directory != first.directory
    assert first.directory.is_dir()  # the old cache is left alone
    if edit is _rewrite:
        np.testing.assert_allclose(second.images[row].reshape(-1, 3).mean(axis=0), (0, 200, 0), atol=3)
        assert not np.array_equal(second.images[row], first.images[row])
    others = [i for i in range(30) if i != row]
    np.testing.assert_array_equal(second.images[others], first.images[others])


def test_added_or_removed_row_invalidates(table: pd.DataFrame, cache_dir: Path) -> None:
    full = build(table, cache_dir)
    fewer = build(table.iloc[:-1].reset_index(drop=True), cache_dir)
    assert fewer.built and fewer.directory != full.directory
    np.testing.assert_array_equal(fewer.images, full.images[:-1])


@pytest.mark.parametrize(("changes"), [
    {"size": 24},
    {"crop": "pad"},
    {"crop": "full"},
    {"dataset": "isic2019"},
])
def test_key_depends_on_settings(table: pd.DataFrame, cache_dir: Path, changes: dict) -> None:
    base = build(table, cache_dir)
    other = build(table, cache_dir, **changes)
    assert other.built
    assert other.directory != base.directory
    assert other.images.shape[1] == changes.get("size", SIZE)
    args = {"dataset": "ham10000", "crop": "center-square", "size": SIZE}
    assert cache_key(table, **{**args, **changes}) == other.directory.name
    assert cache_key(table, **args) == base.directory.name


@pytest.fixture
def table_with_bad(table: pd.DataFrame, tmp_path: Path) -> tuple[pd.DataFrame, int]:
    bad_row = 11
    path = Path(table["path"][bad_row])
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # truncated JPEG (a copy; the shared file is untouched)
    return table, bad_row


def test_bad_image_is_named(table_with_bad: tuple[pd.DataFrame, int], cache_dir: Path) -> None:
    table, bad_row = table_with_bad
    with pytest.raises(BadImagesError) as info:
        build(table, cache_dir)
    bad_path = table["path"][bad_row]
    assert f"1 image(s) could not be read:\n  {bad_path}:" in str(info.value)
    assert "--skip-bad" in str(info.value)
    assert [(f["image_id"], f["path"], f["reason"]) for f in info.value.failures] == [
        (table["image_id"][bad_row], bad_path, "truncated")]


@pytest.mark.parametrize("fail_first", [True, False])
def test_skip_bad_masks_only_that_row(table_with_bad: tuple[pd.DataFrame, int], cache_dir: Path,
                                      fail_first: bool) -> None:
    table, bad_row = table_with_bad
    if fail_first:  # the failure is remembered in the cache; skip_bad then reuses it
        with pytest.raises(BadImagesError):
            build(table, cache_dir)
    arrays = build(table, cache_dir, skip_bad=True)
    assert arrays.built is not fail_first
    expected = np.ones(30, dtype=bool)
    expected[bad_row] = False
    np.testing.assert_array_equal(arrays.valid, expected)
    assert [f["path"] for f in arrays.failures] == [table["path"][bad_row]]
    good = np.asarray(get_crop("center-square")(open_image(table["path"][0]), SIZE))
    np.testing.assert_array_equal(arrays.images[0], good)


def test_missing_file_is_a_bad_image(table: pd.DataFrame, cache_dir: Path) -> None:
    Path(table["path"][3]).unlink()
    arrays = build(table, cache_dir, skip_bad=True)
    assert arrays.valid.sum() == 29 and not arrays.valid[3]
    assert arrays.failures[0]["reason"] == "missing"
