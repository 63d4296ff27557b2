"""Loaders of ISIC 2018 Task 3, ISIC 2020, PAD-UFES-20 and Derm7pt on fixture files in the real release layouts."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lesionlab.cli import main
from lesionlab.config import DataConfig, SplitConfig
from lesionlab.data.datasets import load_dataset
from lesionlab.data.prepare import prepare_data
from lesionlab.data.table import DatasetError
from tests.fixtures.external import (
    DERM7PT_ROWS,
    ISIC2020_ROWS,
    PAD_ROWS,
    write_derm7pt,
    write_isic2018,
    write_isic2020,
    write_pad_ufes,
)


def load(name: str, root: Path, **kwargs):
    return load_dataset(DataConfig(dataset=name, root=str(root), **kwargs))


def test_isic2018_all_parts(tmp_path: Path) -> None:
    write_isic2018(tmp_path / "isic2018")
    ds = load("isic2018", tmp_path)
    assert ds.taxonomy.name == "ham7" and len(ds) == 9
    assert ds.table["official_split"].value_counts().to_dict() == {"train": 4, "test": 3, "val": 2}
    train = ds.table[ds.table["official_split"] == "train"]
    assert train["lesion_id"].tolist() == ["HAM_0000118", "HAM_0000118", "HAM_0002730", "HAM_0001466"]
    assert ds.table.set_index("image_id").loc["ISIC_0034322", "label"] == "akiec"
    assert ds.class_totals()[["mel", "nv", "bcc", "vasc"]].tolist() == [2, 3, 1, 1]
    assert ds.relabel("triage").class_totals().to_dict() == {"P1": 3, "P2": 4, "P3": 2}


def test_isic2018_parts_option_and_errors(tmp_path: Path) -> None:
    write_isic2018(tmp_path / "isic2018")
    test = load("isic2018", tmp_path, options={"parts": "test"})
    assert test.table["official_split"].unique().tolist() == ["test"] and len(test) == 3
    with pytest.raises(DatasetError, match=r"unknown parts \['testing'\]"):
        load("isic2018", tmp_path, options={"parts": "testing"})
    with pytest.raises(DatasetError, match=r"No ISIC 2018 Task 3 ground truth.*isic-challenge-data"):
        load("isic2018", tmp_path / "elsewhere")


def test_isic2020_duplicates_taxonomies_and_patient_disjoint_split(tmp_path: Path) -> None:
    write_isic2020(tmp_path / "isic2020")
    ds = load("isic2020", tmp_path)
    assert ds.taxonomy.name == "isic2020"
    assert len(ds) == len(ISIC2020_ROWS) - 1 and "ISIC_0000005" not in set(ds.table["image_id"])
    assert ds.table["melanoma"].sum() == 3 and ds.table["patient_id"].str.startswith("IP_").all()
    assert ds.class_totals()["unknown"] == 3 and ds.class_totals()["lentigo_nos"] == 1
    assert len(load("isic2020", tmp_path, options={"keep_duplicates": True})) == len(ISIC2020_ROWS)
    inside, outside = ds.relabel_partial("ham7")
    assert inside.class_totals()[["mel", "nv", "bkl"]].tolist() == [3, 2, 2]
    assert sorted(outside["label"]) == ["cafe_au_lait_macule", "unknown", "unknown", "unknown"]
    tri_inside, tri_outside = ds.relabel_partial("triage")
    assert tri_inside.class_totals().to_dict() == {"P1": 3, "P2": 2, "P3": 3}  # cafe-au-lait: benign, priority 3
    assert len(tri_outside) == 3
    with pytest.raises(DatasetError, match="cannot be mapped"):
        ds.relabel("ham7")  # the strict relabel still refuses
    cfg = DataConfig(dataset="isic2020", root=str(tmp_path), image_size=16, cache_dir=str(tmp_path / "cache"),
                     split=SplitConfig(val=0.25, test=0.25))
    table = prepare_data(cfg, progress=False).table
    assert (table.groupby("patient_id")["split"].nunique() == 1).all()  # patient-disjoint
    assert table["split"].nunique() == 3


def test_isic2020_bad_target(tmp_path: Path) -> None:
    base = write_isic2020(tmp_path / "isic2020")
    gt = base / "ISIC_2020_Training_GroundTruth_v2.csv"
    gt.write_text(gt.read_text().replace("benign,0\n", "benign,2\n", 1))
    with pytest.raises(DatasetError, match="target must be 0 or 1"):
        load("isic2020", tmp_path)


def test_pad_ufes_20(tmp_path: Path) -> None:
    write_pad_ufes(tmp_path / "pad_ufes_20")
    ds = load("pad_ufes_20", tmp_path)
    assert ds.taxonomy.name == "isic8" and len(ds) == len(PAD_ROWS)
    assert ds.class_totals()[["BCC", "AK", "MEL", "NV", "SCC", "BKL"]].tolist() == [2, 1, 1, 1, 1, 1]
    assert ds.table["lesion_id"].iloc[0] == "PAD_881" and ds.table["patient_id"].iloc[0] == "PAT_46"
    assert (ds.table["modality"] == "clinical").all() and set(ds.table["sex"]) == {"male", "female"}
    assert load("pad_ufes_20", tmp_path, taxonomy="ham7").class_totals()["akiec"] == 2  # AK + SCC
    assert load("pad_ufes_20", tmp_path, taxonomy="triage").class_totals().to_dict() == {"P1": 4, "P2": 2, "P3": 1}
    meta = tmp_path / "pad_ufes_20" / "metadata.csv"
    meta.write_text(meta.read_text().replace(",SEK,", ",XYZ,"))
    with pytest.raises(DatasetError, match=r"unknown diagnostic codes \['XYZ'\]"):
        load("pad_ufes_20", tmp_path)


def test_derm7pt(tmp_path: Path) -> None:
    write_derm7pt(tmp_path / "derm7pt")
    ds = load("derm7pt", tmp_path)
    assert ds.taxonomy.name == "derm7pt" and len(ds) == len(DERM7PT_ROWS)
    assert all(p.endswith("d.jpg") for p in ds.table["path"])  # dermoscopic by default
    clinic = load("derm7pt", tmp_path, options={"image": "clinic"})
    assert not any(p.endswith("d.jpg") for p in clinic.table["path"]) and (clinic.table["modality"] == "clinical").all()
    assert ds.table["official_split"].tolist() == ["train"] * 4 + ["val", "test"]
    assert {"seven_point_score", "pigment_network", "blue_whitish_veil"} <= set(ds.table.columns)
    assert ds.table["melanoma"].tolist() == [False, False, True, False, False, False]
    inside, outside = ds.relabel_partial("ham7")
    assert inside.class_totals()[["bcc", "nv", "mel", "bkl"]].tolist() == [1, 1, 1, 1]
    assert sorted(outside["label"]) == ["melanosis", "miscellaneous"]
    with pytest.raises(DatasetError, match=r"options\.image must be one of"):
        load("derm7pt", tmp_path, options={"image": "both"})


@pytest.mark.parametrize(("name", "writer", "expect"), [
    ("isic2018", write_isic2018, r"ISIC 2018 Challenge Task 3.*\n.*images 9.*\n(.*\n)*.*mel\s+2\s"),
    ("isic2020", write_isic2020, r"ISIC 2020.*\[isic2020\].*\n.*images 11.*patients 9(.*\n)*.*melanoma\s+3\s"),
    ("pad_ufes_20", write_pad_ufes, r"PAD-UFES-20.*\n.*images 7.*patients 6(.*\n)*.*modality: clinical"),
    ("derm7pt", write_derm7pt, r"Derm7pt.*\n.*images 6(.*\n)*.*miscellaneous\s+1\s"),
])
def test_data_info(tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, writer, expect: str) -> None:
    writer(tmp_path / name)
    assert main(["-q", "data", "info", name, "--data-root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert re.search(expect, out), out
    assert "licence:" in out and "cite:" in out


def test_data_info_offline_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-q", "data", "info", "derm7pt", "--data-root", str(tmp_path)]) == 2
    assert "Register at https://derm.cs.sfu.ca" in capsys.readouterr().err


def test_relabel_partial_refuses_ambiguous_akiec(tmp_path: Path) -> None:
    write_isic2018(tmp_path / "isic2018")
    ds = load("isic2018", tmp_path)  # HAM7 with one akiec image: AK or SCC in ISIC-8, not "outside" it
    with pytest.raises(DatasetError, match=r"\['akiec'\].*isic_ground_truth"):
        ds.relabel_partial("isic8")
    inside, outside = ds.subset(ds.table["label"] != "akiec").relabel_partial("isic8")
    assert len(inside) == 8 and outside.empty
