"""The seen-data guard across releases: an image, lesion or patient a run trained or validated on is refused
whichever release (or merged-source prefix, or ``_downsampled`` name) it comes back through."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from lesionlab.cli import main
from lesionlab.config import DataConfig
from lesionlab.data.identity import canonical_id
from lesionlab.engine.core.run_data import describe_seen, seen_by_kind
from lesionlab.engine.evaluate import SeenDataError, evaluate_run
from tests.fixtures.external import write_isic2018, write_isic2020

#: A run that trained on HAM10000 ids (one through a merged-source prefix) and on one ISIC 2020 patient.
SPLITS = pd.DataFrame([
    {"image_id": "ham:ISIC_0024306", "lesion_id": "ham:HAM_0000118", "patient_id": None, "split": "train"},
    {"image_id": "ISIC_0099999", "lesion_id": "HAM_0002730", "patient_id": None, "split": "val"},
    {"image_id": "ISIC_0077777", "lesion_id": "IL_0099999", "patient_id": "IP_0000006", "split": "train"},
    {"image_id": "ISIC_0034524", "lesion_id": "HAM_0009999", "patient_id": None, "split": "test"},  # test: allowed
])


@pytest.mark.parametrize(("raw", "canonical"), [
    ("ISIC_0024306", "ISIC_0024306"), ("ISIC_0000000_downsampled", "ISIC_0000000"),
    ("ham:ISIC_0024306", "ISIC_0024306"),
    ("HAM_0000118", "HAM_0000118"), ("img:ISIC_0000001", "ISIC_0000001"), ("IP_0000006", "IP_0000006"),
    ("IMD002", "IMD002"), ("PAT_46", "PAT_46"), ("XISIC_0024306", "XISIC_0024306"), (None, None), (float("nan"), None),
])
def test_canonical_id(raw, canonical) -> None:
    assert canonical_id(raw) == canonical


def test_flags_by_kind(tmp_path: Path) -> None:
    SPLITS.to_csv(tmp_path / "splits.csv", index=False)
    table = pd.DataFrame({"image_id": ["ISIC_0024306_downsampled", "ISIC_0024308", "ISIC_0000009", "ISIC_0034524"],
                          "lesion_id": ["x1", "HAM_0002730", "IL_0000008", "HAM_0009999"],
                          "patient_id": [None, None, "IP_0000006", None]})
    flags = seen_by_kind(table, [tmp_path / "splits.csv"])
    assert flags.to_dict("list") == {"image_id": [True, False, False, False], "lesion_id": [False, True, False, False],
                                     "patient_id": [False, False, True, False]}
    assert describe_seen(flags) == "1 by image id, 1 more by lesion id, 1 more by patient id"


@pytest.mark.parametrize(("dataset", "writer", "seen_ids"), [
    ("isic2018", write_isic2018, {"ISIC_0024306", "ISIC_0024307", "ISIC_0024308"}),  # image; lesion HAM_0000118 ×2
    ("isic2020", write_isic2020, {"ISIC_0000008", "ISIC_0000009"}),  # patient IP_0000006
])
def test_evaluate_refuses_then_excludes(tmp_path: Path, run_factory, dataset: str, writer, seen_ids: set[str],
                                        capsys: pytest.CaptureFixture[str]) -> None:
    writer(tmp_path / "data" / dataset)
    run = run_factory(splits=SPLITS)
    cfg = DataConfig(dataset=dataset, root=str(tmp_path / "data"), cache_dir=str(tmp_path / "cache"))
    with pytest.raises(SeenDataError, match=rf"{len(seen_ids)} of \d+ images were used to train or validate"):
        evaluate_run(run, cfg, progress=False, out_dir=tmp_path / "refused")
    assert main(["-q", "evaluate", str(run), "--dataset", dataset, "--data-root", str(tmp_path / "data"),
                 "--out", str(tmp_path / "cli")]) == 2
    assert "--exclude-seen" in capsys.readouterr().err
    result = evaluate_run(run, cfg, exclude_seen=True, progress=False, out_dir=tmp_path / "ok")
    scored = set(pd.read_csv(tmp_path / "ok" / "predictions.csv")["image_id"])
    assert not scored & seen_ids
    assert result.excluded == len(seen_ids & _inside_ham7(dataset, tmp_path))
    if dataset == "isic2020":  # diagnoses without a HAM7 class are reported, not silently dropped
        outside = pd.read_csv(tmp_path / "ok" / "outside_taxonomy.csv")
        assert sorted(outside["label"]) == ["cafe_au_lait_macule", "unknown", "unknown", "unknown"]
        assert "outside the model&#x27;s ham7 classes" in (tmp_path / "ok" / "report.html").read_text()


def _inside_ham7(dataset: str, tmp_path: Path) -> set[str]:
    from lesionlab.data.datasets import load_dataset

    ds = load_dataset(DataConfig(dataset=dataset, root=str(tmp_path / "data")))
    return set(ds.relabel_partial("ham7")[0].table["image_id"])
