"""Lesion-disjoint, class-stratified splits on the real HAM10000 metadata (no images needed) and leakage checks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lesionlab.data.splits import LeakageError, check_no_leakage, kfold_assignment, lesion_disjoint_split

CLASSES = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")


@pytest.fixture(scope="module")
def ham_table(ham_metadata: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"image_id": ham_metadata["image_id"], "lesion_id": ham_metadata["lesion_id"],
                         "label": ham_metadata["dx"], "patient_id": None})


@pytest.fixture(scope="module")
def ham_split(ham_table: pd.DataFrame) -> pd.Series:
    return lesion_disjoint_split(ham_table, val=0.15, test=0.15, seed=0)


@pytest.fixture(scope="module")
def small_table(ham_table: pd.DataFrame) -> pd.DataFrame:
    """~500 images of 400 whole lesions: enough for the seed tests, fast enough to split many times."""
    lesions = ham_table["lesion_id"].drop_duplicates().sample(400, random_state=0)
    return ham_table[ham_table["lesion_id"].isin(lesions)].reset_index(drop=True)


def spans(table: pd.DataFrame, assignment: pd.Series, key: str) -> pd.Series:
    """How many different splits/folds each lesion (or patient) lands in."""
    return pd.DataFrame({"key": table[key].to_numpy(), "s": assignment.to_numpy()}).groupby("key")["s"].nunique()


@pytest.mark.parametrize(("split", "fraction"), [("train", 0.70), ("val", 0.15), ("test", 0.15)])
def test_fractions(ham_split: pd.Series, split: str, fraction: float) -> None:
    assert (ham_split == split).mean() == pytest.approx(fraction, abs=0.02)


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_every_class_in_every_split(ham_table: pd.DataFrame, ham_split: pd.Series, split: str) -> None:
    counts = ham_table.loc[ham_split == split, "label"].value_counts()
    assert set(counts.index) == set(CLASSES)
    assert (counts > 0).all()


def test_split_covers_every_row_and_no_lesion_spans_two(ham_table: pd.DataFrame, ham_split: pd.Series) -> None:
    assert len(ham_split) == len(ham_table)
    assert ham_split.index.equals(ham_table.index)
    assert set(ham_split) == {"train", "val", "test"}
    assert spans(ham_table, ham_split, "lesion_id").max() == 1
    check_no_leakage(ham_table, ham_split)


@pytest.mark.parametrize("seed", [0, 7])
def test_deterministic_per_seed_and_different_across_seeds(small_table: pd.DataFrame, seed: int) -> None:
    a = lesion_disjoint_split(small_table, seed=seed)
    b = lesion_disjoint_split(small_table, seed=seed)
    other = lesion_disjoint_split(small_table, seed=seed + 100)
    pd.testing.assert_series_equal(a, b)
    assert (a != other).mean() > 0.1
    assert spans(small_table, other, "lesion_id").max() == 1


@pytest.mark.parametrize(("val", "test"), [(0.1, 0.2), (0.2, 0.1), (0.0, 0.25), (0.25, 0.0)])
def test_other_fractions(small_table: pd.DataFrame, val: float, test: float) -> None:
    split = lesion_disjoint_split(small_table, val=val, test=test, seed=3)
    for name, fraction in (("val", val), ("test", test), ("train", 1 - val - test)):
        assert (split == name).mean() == pytest.approx(fraction, abs=0.04), name
    assert spans(small_table, split, "lesion_id").max() == 1


@pytest.mark.parametrize(("val", "test", "lesions", "match"), [
    (0.01, 0.15, 50, "below"),
    (0.15, 0.02, 50, "below"),
    (0.15, 0.15, 2, "at least 3 lesions"),
])
def test_split_rejects(val: float, test: float, lesions: int, match: str) -> None:
    table = pd.DataFrame({"image_id": [f"i{i}" for i in range(lesions)], "lesion_id": [f"L{i}" for i in range(lesions)],
                          "label": ["a", "b"] * (lesions // 2) + ["a"] * (lesions % 2)})
    with pytest.raises(ValueError, match=match):
        lesion_disjoint_split(table, val=val, test=test)


def multi_image_lesions(table: pd.DataFrame) -> list[str]:
    counts = table["lesion_id"].value_counts()
    return counts[counts > 1].index.tolist()


@pytest.mark.parametrize(("pick", "target"), [(0, "train"), (1, "val"), (-1, "test")])
def test_leaky_split_names_the_lesion(ham_table: pd.DataFrame, ham_split: pd.Series, pick: int, target: str) -> None:
    leaky = ham_split.copy()
    lesion_split = ham_split.groupby(ham_table["lesion_id"]).first()
    candidates = [les for les in multi_image_lesions(ham_table) if lesion_split[les] != target]
    lesion = candidates[pick]
    row = ham_table.index[ham_table["lesion_id"] == lesion][0]
    leaky[row] = target  # one image of a multi-image lesion moves to another split
    with pytest.raises(LeakageError, match=f"1 lesion\\(s\\) in several splits.*{lesion}"):
        check_no_leakage(ham_table, leaky)


def patient_table(patient_ids: list[str | None]) -> pd.DataFrame:
    n = len(patient_ids)
    return pd.DataFrame({"image_id": [f"img{i}" for i in range(n)], "lesion_id": [f"L{i}" for i in range(n)],
                         "label": ["mel"] * n, "patient_id": patient_ids})


@pytest.mark.parametrize(("patients", "split", "leaked"), [
    (["P1", "P1", "P2"], ["train", "test", "val"], "P1"),  # two lesions of P1 in different splits
    (["P1", "P2", "P3", "P3"], ["train", "val", "test", "train"], "P3"),
    (["P1", None, "P9", "P9"], ["train", "test", "val", "test"], "P9"),  # unknown patients are not grouped
])
def test_patient_leakage(patients: list[str | None], split: list[str], leaked: str) -> None:
    table = patient_table(patients)
    with pytest.raises(LeakageError, match=f"patient\\(s\\) in several splits.*{leaked}"):
        check_no_leakage(table, pd.Series(split))
    # without patient ids the same assignment is lesion-disjoint and passes
    check_no_leakage(table.assign(patient_id=None), pd.Series(split))


def test_no_leakage_across_distinct_patients() -> None:
    check_no_leakage(patient_table(["P1", "P2", None, None]), pd.Series(["train", "val", "test", "train"]))


def test_split_groups_by_patient() -> None:
    rng = np.random.default_rng(0)
    n_patients = 120
    rows = []
    for p in range(n_patients):
        for les in range(rng.integers(1, 4)):  # 1-3 lesions per patient, 1-2 images per lesion
            for img in range(rng.integers(1, 3)):
                rows.append({"image_id": f"p{p}l{les}i{img}", "lesion_id": f"p{p}l{les}", "patient_id": f"P{p}",
                             "label": ["mel", "nv", "bcc"][p % 3]})
    table = pd.DataFrame(rows)
    split = lesion_disjoint_split(table, seed=4)
    assert spans(table, split, "patient_id").max() == 1
    assert set(split) == {"train", "val", "test"}


@pytest.mark.parametrize("k", [2, 3, 5])
def test_kfold_disjoint_and_covering(small_table: pd.DataFrame, k: int) -> None:
    folds = kfold_assignment(small_table, k=k, seed=0)
    assert len(folds) == len(small_table)
    assert sorted(folds.unique()) == list(range(k))  # every row assigned (no -1), every fold used
    assert spans(small_table, folds, "lesion_id").max() == 1  # each lesion lies in exactly one fold
    sizes = folds.value_counts()
    assert sizes.max() - sizes.min() <= 0.1 * len(small_table)
    for label, per_fold in pd.crosstab(small_table["label"], folds).iterrows():
        if (small_table["label"] == label).sum() >= 5 * k:  # stratified: common classes in every fold
            assert (per_fold > 0).all(), label
    pd.testing.assert_series_equal(folds, kfold_assignment(small_table, k=k, seed=0))
