"""``predict`` marks images whose image id or lesion id the model trained or validated on, and never refuses them:
Python result, table/JSON/CSV output with a warning line, the REST response."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from lesionlab.cli import main
from lesionlab.serving.predictor import Predictor
from lesionlab.serving.seen import SeenImages, image_id_of


def test_seen_images_by_image_id_and_by_lesion_id(tmp_path: Path) -> None:
    splits = pd.DataFrame({"image_id": ["a", "b", "c", "d"], "lesion_id": ["L1", "L2", "L1", "L3"],
                           "split": ["train", "val", "test", "test"]})  # c: a test image of a trained lesion
    splits.to_csv(tmp_path / "splits.csv", index=False)
    seen = SeenImages.for_sources([tmp_path / "model.pt"])
    assert "image a was in" in seen.reason("/x/a.jpg") and "image b" in seen.reason("b.png")
    assert seen.reason("c.jpg").startswith("lesion L1 (of image c)")  # looked up in the runs' table
    assert seen.reason("d.jpg") == "" and seen.reason("new.jpg") == ""
    assert seen.reason("new.jpg", lesion_id="L2").startswith("lesion L2")  # given by the caller
    assert SeenImages.for_sources([tmp_path / "elsewhere" / "model.onnx"]) is None
    assert image_id_of("C:\\data\\ISIC_0024306.jpg") == "ISIC_0024306"


def test_predictor_marks_but_does_not_refuse(predictor: Predictor, seen_image: Path, unseen_images: list[Path],
                                             serving_run: Path, tmp_path: Path) -> None:
    seen, unseen = predictor.predict([seen_image, unseen_images[0]])
    assert seen.seen_in_training is True and seen_image.stem in seen.seen_reason and seen.top
    assert unseen.seen_in_training is False and unseen.seen_reason == ""
    (renamed,) = predictor.predict([unseen_images[0].read_bytes()], names=["upload.jpg"],
                                   lesion_ids=[pd.read_csv(serving_run / "splits.csv").query("split == 'val'")
                                               ["lesion_id"].iloc[0]])
    assert renamed.seen_in_training and renamed.seen_reason.startswith("lesion ")
    shutil.copy2(serving_run / "model.pt", tmp_path / "model.pt")  # no splits.csv beside it: unknown, not False
    (bare,) = Predictor.load(tmp_path / "model.pt").predict([seen_image])
    assert bare.seen_in_training is None and "unknown" in bare.seen_reason


def test_ensemble_marks_what_any_member_saw(serving_run: Path, seen_image: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy2(serving_run / "model.pt", other / "model.pt")
    pd.DataFrame({"image_id": ["x"], "lesion_id": ["X"], "split": ["train"]}).to_csv(other / "splits.csv",
                                                                                       index=False)
    (r,) = Predictor.load([other, serving_run]).predict([seen_image])
    assert r.seen_in_training


def test_cli_outputs_and_warning(serving_run: Path, seen_image: Path, unseen_images: list[Path], tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    images = [str(seen_image), str(unseen_images[0])]
    capsys.readouterr()
    assert main(["-q", "predict", str(serving_run), *images]) == 0
    out = capsys.readouterr()
    assert out.out.count("SEEN IN TRAINING") == 1
    assert out.out.count("by rule top-1") + out.out.count("by rule operating-threshold") == 2
    assert "unsure: " in out.out.lower()
    assert out.err.startswith("warning: 1 of 2 images were used to train or validate") and seen_image.stem in out.err
    assert main(["-q", "predict", str(serving_run), *images, "--format", "json"]) == 0
    assert [r["seen_in_training"] for r in json.loads(capsys.readouterr().out)] == [True, False]
    csv = ["--format", "csv", "--out", str(tmp_path / "p.csv")]
    assert main(["-q", "predict", str(serving_run), *images, *csv]) == 0
    frame = pd.read_csv(tmp_path / "p.csv")
    assert frame["seen_in_training"].tolist() == [True, False] and frame["unsure"].isin([True, False]).all()
    assert frame["triage_rule"].isin(["top-1", "operating-threshold"]).all()


def test_rest_response_carries_the_mark(app, seen_image: Path, unseen_images: list[Path]) -> None:
    client = TestClient(app)
    r = client.post("/v1/predict", files={"image": (seen_image.name, seen_image.read_bytes(), "image/jpeg")})
    assert r.status_code == 200, r.text
    assert r.json()["seen_in_training"] is True and seen_image.stem in r.json()["seen_reason"]
    files = [("images", (p.name, p.read_bytes(), "image/jpeg")) for p in (seen_image, unseen_images[0])]
    batch = client.post("/v1/predict/batch", files=files).json()["results"]
    assert [b["prediction"]["seen_in_training"] for b in batch] == [True, False]
    assert client.get("/v1/model").json()["training_data"]["seen_images_recorded"] is True
    schema = client.get("/openapi.json").json()["components"]["schemas"]["PredictionOut"]["properties"]
    assert "seen_in_training" in schema
