"""The PH2 loader: official release layout, half-resolution layout, label maps, masks for CAM-in-lesion."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from lesionlab.cli import main
from lesionlab.config import DataConfig
from lesionlab.data.datasets import load_dataset
from lesionlab.data.ph2 import parse_ph2_txt
from lesionlab.data.table import DatasetError
from lesionlab.evaluation.explain import cam_in_lesion, load_mask_files, load_masks
from tests.fixtures.external import PH2_ROWS, write_ph2_half, write_ph2_official


def ph2(root: Path, **kwargs):
    return load_dataset(DataConfig(dataset="ph2", root=str(root), **kwargs))


@pytest.mark.parametrize("tab_export", [False, True])
def test_official_layout(tmp_path: Path, tab_export: bool) -> None:
    write_ph2_official(tmp_path / "ph2", tab_export=tab_export)
    ds = ph2(tmp_path)
    assert ds.taxonomy.name == "ham7"
    assert ds.table["image_id"].tolist() == [r[0] for r in PH2_ROWS]
    assert ds.table["diagnosis"].tolist() == ["atypical_nevus", "common_nevus", "common_nevus", "melanoma",
                                              "atypical_nevus", "melanoma"]
    assert ds.class_totals()[["mel", "nv"]].tolist() == [2, 4]
    assert ds.class_totals().drop(["mel", "nv"]).sum() == 0
    assert all(p.endswith(".bmp") and "_Dermoscopic_Image" in p for p in ds.table["path"])
    assert all(p.endswith("_lesion.bmp") for p in ds.table["mask_path"])
    assert (ds.table["lesion_id"] == ds.table["image_id"]).all()
    assert (ds.table["modality"] == "dermoscopic").all()


def test_half_layout_and_taxonomies(tmp_path: Path) -> None:
    write_ph2_half(tmp_path / "ph2")
    ds = ph2(tmp_path)
    assert all(p.endswith(".jpg") for p in ds.table["path"])
    assert all(p.endswith("_lesion.png") for p in ds.table["mask_path"])
    assert ph2(tmp_path, taxonomy="isic8").class_totals()[["MEL", "NV"]].tolist() == [2, 4]
    assert ph2(tmp_path, taxonomy="triage").class_totals().to_dict() == {"P1": 2, "P2": 4, "P3": 0}


def test_official_txt_parser_reads_release_columns(tmp_path: Path) -> None:
    release = write_ph2_official(tmp_path)
    table = parse_ph2_txt(release / "PH2_dataset.txt")
    assert table["clinical_diagnosis_code"].tolist() == [r[1] for r in PH2_ROWS]
    assert table.loc[table["diagnosis"] == "melanoma", "histological_diagnosis"].eq("Melanoma").all()
    assert "Asymmetry" in table.columns


def test_bad_inputs_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"PH2 labels not found.*PH2_dataset.txt.*PH2Dataset"):
        ph2(tmp_path)
    release = write_ph2_official(tmp_path / "ph2", rows=(("IMD002", 1), ("IMD003", 7)))
    with pytest.raises(DatasetError, match=r"must be 0, 1 or 2.*IMD003"):
        ph2(tmp_path)
    (release / "PH2_dataset.txt").write_text("just some text\n")
    with pytest.raises(DatasetError, match="no header line"):
        ph2(tmp_path)


def test_labels_csv_and_txt_must_agree(tmp_path: Path) -> None:
    base = write_ph2_half(tmp_path / "ph2")
    write_ph2_official(tmp_path / "other", tab_export=True)
    txt = (tmp_path / "other" / "PH2Dataset" / "PH2_dataset.txt").read_text(encoding="latin-1")
    (base / "PH2_dataset.txt").write_text(txt.replace("IMD058\t2", "IMD058\t0"), encoding="latin-1")
    with pytest.raises(DatasetError, match=r"disagree on.*IMD058"):
        ph2(tmp_path)


def test_missing_image_is_named(tmp_path: Path) -> None:
    base = write_ph2_half(tmp_path / "ph2")
    (base / "images_half" / "IMD009.jpg").unlink()
    with pytest.raises(DatasetError, match=r"1 of 6 images not found.*IMD009"):
        ph2(tmp_path)
    assert len(ph2(tmp_path, skip_bad=True)) == 5


@pytest.mark.parametrize("layout", ["official", "half"])
def test_masks_feed_cam_in_lesion(tmp_path: Path, layout: str) -> None:
    (write_ph2_official if layout == "official" else write_ph2_half)(tmp_path / "ph2")
    table = ph2(tmp_path).table
    masks, found = load_mask_files(table["mask_path"].tolist(), "center-square", 16)
    assert found.all() and masks.shape == (6, 16, 16)
    assert 0.1 < masks.mean() < 0.5  # the ellipse, not the whole frame
    inside = masks.astype(np.float32)  # a heat-map exactly on the lesion scores 1, its complement 0
    np.testing.assert_allclose(cam_in_lesion(inside, masks), 1.0)
    np.testing.assert_allclose(cam_in_lesion(1 - inside, masks), 0.0)
    if layout == "half":  # the mask-folder lookup of `lesionlab explain --masks` finds IMDxxx_lesion.png too
        by_dir, found_dir = load_masks(table["image_id"].tolist(), tmp_path / "ph2" / "masks_half", "center-square",
                                       16)
        assert found_dir.all() and (by_dir == masks).all()


def test_data_info_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_ph2_official(tmp_path / "ph2")
    assert main(["-q", "data", "info", "ph2", "--data-root", str(tmp_path), "--taxonomy", "triage"]) == 0
    out = capsys.readouterr().out
    assert "PH2" in out and "Mendonça" in out
    assert re.search(r"^\s+P1\s+2\s", out, re.M) and re.search(r"^\s+P2\s+4\s", out, re.M)


def test_shared_ph2(shared_data: Path) -> None:
    if not (shared_data / "ph2" / "PH2_labels.csv").is_file():
        pytest.skip("PH2 not in the shared data")
    ds = ph2(shared_data)
    assert len(ds) == 200
    assert ds.table["diagnosis"].value_counts().to_dict() == {"common_nevus": 80, "atypical_nevus": 80,
                                                              "melanoma": 40}
    assert ds.class_totals()[["mel", "nv"]].tolist() == [40, 160]
    assert ds.table["mask_path"].notna().all()
