"""Label spaces, triage priorities and the maps between HAM10000 (7 classes), ISIC 2019 (8) and triage (3)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from lesionlab.data.taxonomy import (
    HAM7,
    ISIC8,
    TRIAGE,
    LabelMappingError,
    get_taxonomy,
    ham_to_isic8,
    map_labels,
    onehot_to_labels,
    triage_priority,
)
from lesionlab.registry import UnknownNameError

# The triage spec: 1 = malignant (MEL/BCC/SCC), 2 = AK/AKIEC and nevi, 3 = benign or anything else.
PRIORITIES = [
    ("mel", 1), ("bcc", 1), ("akiec", 2), ("nv", 2), ("bkl", 3), ("df", 3), ("vasc", 3),  # HAM7
    ("MEL", 1), ("BCC", 1), ("SCC", 1), ("AK", 2), ("NV", 2), ("BKL", 3), ("DF", 3), ("VASC", 3),  # ISIC8
    ("Mel", 1), ("scc", 1), ("ak", 2), ("AKIEC", 2),  # any case
    ("other", 3), ("UNK", 3), ("lentigo", 3),  # unknown diagnoses are not urgent by default
]


def test_priority_table_covers_every_class() -> None:
    listed = {code for code, _ in PRIORITIES}
    assert set(HAM7.classes) <= listed
    assert set(ISIC8.classes) <= listed


@pytest.mark.parametrize(("label", "priority"), PRIORITIES)
def test_triage_priority(label: str, priority: int) -> None:
    assert triage_priority(label) == priority


@pytest.mark.parametrize(("src", "classes"), [("ham7", HAM7.classes), ("isic8", ISIC8.classes)])
def test_triage_map_agrees_with_priority(src: str, classes: tuple[str, ...]) -> None:
    mapped = map_labels(classes, src, "triage")
    assert mapped == [f"P{triage_priority(c)}" for c in classes]
    assert set(mapped) <= set(TRIAGE.classes)


@pytest.mark.parametrize(("src", "dst", "labels", "expected"), [
    ("isic8", "ham7", ["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC"],
     ["mel", "nv", "bcc", "akiec", "bkl", "df", "vasc", "akiec"]),
    ("ham7", "isic8", ["mel", "nv", "bcc", "bkl", "df", "vasc"], ["MEL", "NV", "BCC", "BKL", "DF", "VASC"]),
    ("ham7", "isic8", ["MEL", "Nv"], ["MEL", "NV"]),  # source spellings are canonicalised first
    ("ham7", "ham7", ["mel", "AK"], ["mel", "akiec"]),  # identity map, aliases resolved
    ("isic8", "triage", ["SCC", "AK", "DF"], ["P1", "P2", "P3"]),
])
def test_map_labels(src: str, dst: str, labels: list[str], expected: list[str]) -> None:
    assert map_labels(labels, src, dst) == expected


@pytest.mark.parametrize("labels", [["akiec"], ["mel", "akiec", "nv"], ["AK"]])
def test_ham7_to_isic8_refuses_akiec(labels: list[str]) -> None:
    with pytest.raises(LabelMappingError, match=r"akiec.*ham_to_isic8"):
        map_labels(labels, "ham7", "isic8")


@pytest.mark.parametrize(("src", "dst"), [("triage", "ham7"), ("triage", "isic8"), ("ham7", "nosuch")])
def test_no_map(src: str, dst: str) -> None:
    with pytest.raises((LabelMappingError, UnknownNameError)):
        map_labels(["P1"], src, dst)


@pytest.mark.parametrize(("taxonomy", "label"), [(HAM7, "foo"), (ISIC8, "akiec"), (ISIC8, "UNK"), (TRIAGE, "P4")])
def test_unknown_label_lists_known_ones(taxonomy, label: str) -> None:
    with pytest.raises(LabelMappingError) as info:
        taxonomy.canonical(label)
    assert repr(label) in str(info.value)
    assert all(c in str(info.value) for c in taxonomy.classes)


def test_unknown_label_in_map_labels_names_it() -> None:
    with pytest.raises(LabelMappingError, match=r"'foo'.*known: akiec, bcc"):
        map_labels(["mel", "foo"], "ham7", "triage")


@pytest.mark.parametrize(("taxonomy", "spelling", "code"), [
    (HAM7, "AK", "akiec"), (HAM7, " Melanoma ", "mel"), (HAM7, "NEVUS", "nv"), (ISIC8, "mel", "MEL"),
    (TRIAGE, "1", "P1"), (TRIAGE, "priority-3", "P3"),
])
def test_aliases(taxonomy, spelling: str, code: str) -> None:
    assert taxonomy.canonical(spelling) == code
    assert taxonomy.index(spelling) == taxonomy.classes.index(code)


def test_get_taxonomy_unknown_suggests() -> None:
    with pytest.raises(UnknownNameError, match=r"Did you mean 'ham7'.*isic8.*triage"):
        get_taxonomy("ham8")


ONEHOT_CLASSES = ["MEL", "NV", "BCC"]


@pytest.mark.parametrize(("rows", "expected"), [
    ([("a", 1, 0, 0), ("b", 0, 1, 0), ("c", 0, 0, 1)], ["MEL", "NV", "BCC"]),
    ([("a", 0.7, 0.2, 0.1), ("b", 0.0, 0.4, 0.6)], ["MEL", "BCC"]),  # probabilities with one clear winner
    ([("a", 1.0, 0.0, 0.0)], ["MEL"]),
])
def test_onehot_to_labels(rows: list[tuple], expected: list[str]) -> None:
    frame = pd.DataFrame(rows, columns=["image", *ONEHOT_CLASSES])
    assert onehot_to_labels(frame, ONEHOT_CLASSES).tolist() == expected


@pytest.mark.parametrize(("rows", "bad_ids"), [
    ([("ok", 1, 0, 0), ("none", 0, 0, 0)], ["none"]),
    ([("two", 1, 1, 0), ("ok", 0, 0, 1)], ["two"]),
    ([("three", 1, 1, 1), ("zero", 0, 0, 0), ("ok", 0, 1, 0)], ["three", "zero"]),
    ([("flat", 0.34, 0.33, 0.33)], ["flat"]),  # no class reaches 0.5
])
def test_onehot_rejects_non_onehot_rows(rows: list[tuple], bad_ids: list[str]) -> None:
    frame = pd.DataFrame(rows, columns=["image", *ONEHOT_CLASSES])
    with pytest.raises(LabelMappingError, match=f"{len(bad_ids)} rows are not one-hot") as info:
        onehot_to_labels(frame, ONEHOT_CLASSES)
    for bad in bad_ids:
        assert repr(bad) in str(info.value)
    assert "'ok'" not in str(info.value)


def test_onehot_missing_columns() -> None:
    frame = pd.DataFrame([("a", 1, 0)], columns=["image", "MEL", "NV"])
    with pytest.raises(LabelMappingError, match=r"lacks columns \['BCC'\]"):
        onehot_to_labels(frame, ONEHOT_CLASSES)


def test_ham_to_isic8_on_real_tables(ham_metadata: pd.DataFrame, isic_ground_truth: Path) -> None:
    labels = ham_to_isic8(ham_metadata, str(isic_ground_truth))
    assert len(labels) == 10_015
    assert labels.value_counts().to_dict() == {
        "MEL": 1113, "NV": 6705, "BCC": 514, "AK": 130, "BKL": 1099, "DF": 115, "VASC": 142, "SCC": 197,
    }
    # only akiec splits; every other class maps one-to-one
    pairs = pd.crosstab(ham_metadata["dx"], labels)
    assert pairs.loc["akiec", "AK"] == 130 and pairs.loc["akiec", "SCC"] == 197
    for ham, isic in [("mel", "MEL"), ("nv", "NV"), ("bcc", "BCC"), ("bkl", "BKL"), ("df", "DF"), ("vasc", "VASC")]:
        assert (pairs.loc[ham] > 0).sum() == 1 and pairs.loc[ham, isic] > 0
    # and mapping back gives the HAM labels exactly
    assert map_labels(labels, "isic8", "ham7") == ham_metadata["dx"].tolist()


def test_ham_to_isic8_missing_images(isic_ground_truth: Path) -> None:
    table = pd.DataFrame({"image_id": ["ISIC_0024306", "NOT_AN_ISIC_IMAGE"]})
    with pytest.raises(LabelMappingError, match=r"1 images are not in .*NOT_AN_ISIC_IMAGE"):
        ham_to_isic8(table, str(isic_ground_truth))
