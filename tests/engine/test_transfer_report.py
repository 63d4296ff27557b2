"""``lesionlab transfer-report`` on fixture sets in the real layouts, scored by a tiny untrained model (no training)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from lesionlab.cli import main
from lesionlab.engine.evaluate import SeenDataError
from lesionlab.engine.transfer_report import transfer_report
from lesionlab.evaluation.bootstrap import binary_auc, bootstrap_ci
from lesionlab.models.checkpoint import update_preprocessing
from tests.fixtures.external import write_derm7pt, write_isic2018, write_isic2020, write_pad_ufes, write_ph2_official

UNRELATED = pd.DataFrame({"image_id": ["ISIC_0099999"], "lesion_id": ["HAM_0099999"], "split": ["train"]})


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    write_ph2_official(root / "ph2")
    write_isic2020(root / "isic2020")
    write_derm7pt(root / "derm7pt")
    write_pad_ufes(root / "pad_ufes_20")
    write_isic2018(root / "isic2018")
    return root


def test_binary_auc_matches_sklearn() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200).astype(bool)
    s = rng.normal(size=200) + y
    s[:20] = s[20:40]  # ties
    assert binary_auc(y, s) == pytest.approx(roc_auc_score(y, s))
    assert np.isnan(binary_auc(np.ones(5, bool), s[:5]))


def test_bootstrap_resamples_whole_lesions() -> None:
    groups = ["a"] + ["b"] * 9  # one lesion with 1 image, one with 9
    sizes = set()
    bootstrap_ci(lambda idx: sizes.add(len(idx)) or 0.0, groups, n_boot=200)
    assert sizes <= {2, 10, 18} and len(sizes) == 3
    lo, hi = bootstrap_ci(lambda idx: float(np.mean(np.asarray([0.0] + [1.0] * 9)[idx])), groups, n_boot=500)
    assert 0.0 <= lo <= 0.9 <= hi <= 1.0


def test_shift_table_on_fixture_sets(tmp_path: Path, data_root: Path, run_factory) -> None:
    run = run_factory(splits=UNRELATED)
    update_preprocessing(run / "model.pt", thresholds={"mel": 0.05})  # a stored triage operating point
    sets = ["ph2", "isic2020", "derm7pt", "pad_ufes_20", "isic2018"]
    result = transfer_report(run, sets, data_root=str(data_root), n_boot=200, out_dir=tmp_path / "out")
    t = result.table
    assert list(t.index) == sets
    assert t["images"].tolist() == [6, 11, 6, 7, 9]
    assert t["outside taxonomy"].tolist() == [0, 4, 2, 0, 0]  # isic2020: 3 unknown + cafe-au-lait; derm7pt: 2
    assert t["scored"].tolist() == [6, 7, 4, 7, 9]
    assert t["melanomas"].tolist() == [2, 3, 1, 1, 2]
    assert (t["OOD-flag rate"] == "n/a").all()
    for name in sets:  # the headline numbers agree with the per-image predictions written beside them
        pred = pd.read_csv(tmp_path / "out" / f"predictions_{name}.csv")
        summary = next(s.summary for s in result.scores if s.name == name)
        known = pred["melanoma"].notna()
        if pred.loc[known, "melanoma"].nunique() == 2:
            assert summary["melanoma_auc"] == pytest.approx(roc_auc_score(pred.loc[known, "melanoma"],
                                                                          pred.loc[known, "p_mel"]))
        p1 = pred[pred["p1_truth"] == 1]
        assert summary["p1_sensitivity"] == pytest.approx((p1["triage_priority"] == 1).mean())
        assert ((pred["p_mel"] >= 0.05) <= (pred["triage_priority"] == 1)).all()  # the stored threshold is applied
    isic2020 = pd.read_csv(tmp_path / "out" / "predictions_isic2020.csv")
    assert isic2020["melanoma"].notna().all()  # the binary target covers the 'unknown' diagnoses too
    assert set(isic2020.loc[isic2020["diagnosis"] == "cafe_au_lait_macule", "p1_truth"]) == {0.0}
    outside = result.outside
    assert set(zip(outside["dataset"], outside["diagnosis"], outside["images"], strict=True)) == {
        ("isic2020", "cafe_au_lait_macule", 1), ("isic2020", "unknown", 3), ("derm7pt", "melanosis", 1),
        ("derm7pt", "miscellaneous", 1)}
    html = (tmp_path / "out" / "report.html").read_text()
    for section in ("Shift table", "Melanoma AUC and triage operating point", "Diagnoses outside the model",
                    "Per-class recall per set", "P(mel) ≥ 0.050", "no OOD detector"):
        assert section in html
    saved = json.loads((tmp_path / "out" / "transfer.json").read_text())
    assert [s["dataset"] for s in saved["sets"]] == sets


def test_ood_column_filled_when_a_detector_answers(tmp_path: Path, data_root: Path, run_factory) -> None:
    run = run_factory(splits=UNRELATED)

    def flagger(paths):  # a stand-in detector: flags the melanoma images of PH2
        return np.array([1.0 if any(i in p for i in ("IMD058", "IMD063")) else 0.0 for p in paths])

    result = transfer_report(run, ["ph2"], data_root=str(data_root), n_boot=50, ood=flagger, out_dir=tmp_path / "o")
    assert result.table.loc["ph2", "OOD-flag rate"] == pytest.approx(2 / 6)
    assert "no OOD detector" not in (tmp_path / "o" / "report.html").read_text()


def test_refuses_seen_ids_from_another_release(tmp_path: Path, data_root: Path, run_factory) -> None:
    run = run_factory(splits=pd.DataFrame({"image_id": ["ISIC_0024306"], "lesion_id": ["HAM_0000118"],
                                           "split": ["train"]}))
    with pytest.raises(SeenDataError, match=r"isic2018: 2 of 9 images.*\(1 by image id, 1 more by lesion id\)"):
        transfer_report(run, ["ph2", "isic2018"], data_root=str(data_root), n_boot=10, out_dir=tmp_path / "x")
    result = transfer_report(run, ["isic2018"], data_root=str(data_root), n_boot=10, exclude_seen=True,
                             out_dir=tmp_path / "y")
    assert result.table.loc["isic2018", "seen, excluded"] == 2 and result.table.loc["isic2018", "scored"] == 7


def test_cli(tmp_path: Path, data_root: Path, run_factory, capsys: pytest.CaptureFixture[str]) -> None:
    run = run_factory(splits=UNRELATED)
    assert main(["-q", "transfer-report", str(run), "--datasets", "ph2", "derm7pt", "--data-root", str(data_root),
                 "--option", "derm7pt:image=clinic", "--bootstrap", "20", "--out", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "outside the model's classes" in out and "melanosis" in out and "report:" in out
    pred = pd.read_csv(tmp_path / "r" / "predictions_derm7pt.csv")
    assert len(pred) == 6
    assert main(["-q", "transfer-report", str(run), "--datasets", "ph2", "--option", "ph2", "--out",
                 str(tmp_path / "bad")]) == 2
    assert "DATASET:KEY=VALUE" in capsys.readouterr().err


def test_predictor_ood_flagger_reads_the_detector_defensively(tmp_path: Path, run_factory, monkeypatch) -> None:
    from types import SimpleNamespace

    from lesionlab.commands.transfer_report import predictor_ood_flagger
    from lesionlab.serving.predictor import Predictor

    release = write_ph2_official(tmp_path / "ph2")
    paths = sorted(str(p) for p in release.rglob("*_Dermoscopic_Image/*.bmp"))
    run = run_factory(splits=UNRELATED)
    assert predictor_ood_flagger(str(run))(paths) is None  # today's predictions carry no `ood` field

    def with_detector(self, files, topk=3, batch_size=64):  # a predictor whose model has an OOD detector
        results = [SimpleNamespace(source=str(p), ood="IMD058" in str(p)) for p in files if "IMD063" not in str(p)]
        return results, [f"{p}: not assessable (too dark)" for p in files if "IMD063" in str(p)]

    monkeypatch.setattr(Predictor, "predict_files", with_detector)
    flags = predictor_ood_flagger(str(run))(paths)
    assert flags.tolist() == [1.0 if "IMD058" in p or "IMD063" in p else 0.0 for p in paths]


def test_triage_model_scores_melanoma_by_priority_1(tmp_path: Path, data_root: Path) -> None:
    import torch

    from lesionlab.config import ModelConfig
    from lesionlab.models.checkpoint import Preprocessing, save_model
    from lesionlab.models.classifier import create_model

    torch.manual_seed(0)
    cfg = ModelConfig(backbone="tiny-resnet", drop_rate=0.0)
    prep = Preprocessing(image_size=16, crop="center-square", mean=(0.5,) * 3, std=(0.25,) * 3,
                         class_names=("P1", "P2", "P3"), taxonomy="triage")
    run = tmp_path / "triage-run"
    run.mkdir()
    save_model(run / "model.pt", create_model(cfg, 3).eval(), cfg, prep)
    UNRELATED.to_csv(run / "splits.csv", index=False)
    result = transfer_report(run, ["ph2", "isic2020"], data_root=str(data_root), n_boot=20, out_dir=tmp_path / "t")
    assert result.table["outside taxonomy"].tolist() == [0, 3]  # cafe-au-lait macule is priority 3: in the taxonomy
    for name in ("ph2", "isic2020"):
        pred = pd.read_csv(tmp_path / "t" / f"predictions_{name}.csv")
        summary = next(s.summary for s in result.scores if s.name == name)
        assert summary["melanoma_auc"] == pytest.approx(roc_auc_score(pred["melanoma"], pred["p_P1"]))
