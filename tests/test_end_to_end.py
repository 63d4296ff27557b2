"""End-to-end: ``main([...])`` trains on a few hundred real HAM10000 images, then evaluate and predict use the run."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pandas as pd
import pytest

from lesionlab.cli import main

pytestmark = pytest.mark.slow

ARTIFACTS = ("config.yaml", "splits.csv", "data_summary.json", "model.pt", "history.csv", "metrics.json",
             "predictions.csv", "per_class.csv", "report.html", "timings.json", "figures/confusion.png",
             "figures/roc.png", "figures/learning_curves.png", "figures/split_counts.png")


@pytest.fixture(scope="module")
def trained_run(shared_data: Path, tiny_run) -> Path:
    return tiny_run("data.max_samples=400", "data.image_size=32", "train.epochs=2", "train.batch_size=32",
                    "eval.tta=flips", name="e2e", data_root=shared_data)


def test_train_writes_every_artifact(trained_run: Path) -> None:
    for name in ARTIFACTS:
        assert (trained_run / name).is_file(), name
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert 0.0 <= metrics["balanced_accuracy"] <= 1.0
    assert set(metrics["per_class"]) == {"akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"}
    html = (trained_run / "report.html").read_text()
    for section in ("Headline metrics", "Per-class metrics", "Confusion matrix", "ROC curves", "Learning curves",
                    "Data", "Configuration", "CC BY-NC 4.0", "data:image/png;base64,"):
        assert section in html, section


def test_test_split_never_trained_on(trained_run: Path) -> None:
    splits = pd.read_csv(trained_run / "splits.csv")
    preds = pd.read_csv(trained_run / "predictions.csv")
    test_ids = set(splits.loc[splits["split"] == "test", "image_id"])
    assert set(preds["image_id"]) == test_ids
    lesions = splits.groupby("lesion_id")["split"].nunique()
    assert (lesions == 1).all(), "a lesion appears in two splits"
    history = pd.read_csv(trained_run / "history.csv")
    assert len(history) == 2 and history["val_bal_acc"].notna().all()


def _write_onehot(path: Path, image_ids: list[str], labels: list[str]) -> None:
    cols = ["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"]
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", *cols])
        for i, lab in zip(image_ids, labels, strict=True):
            w.writerow([i, *(1.0 if c.lower() == lab else 0.0 for c in cols)])


def test_evaluate_on_onehot_csv_and_refuse_seen_images(trained_run: Path, shared_data: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    splits = pd.read_csv(trained_run / "splits.csv")
    test = splits[splits["split"] == "test"]
    gt = tmp_path / "test_gt.csv"
    _write_onehot(gt, test["image_id"].tolist(), test["label"].tolist())
    images = str(shared_data / "ham10000" / "images_200x150")
    out = tmp_path / "eval"
    assert main(["-q", "evaluate", str(trained_run), "--dataset", "onehot-csv", "--csv", str(gt), "--image-dir", images,
                 "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n"] == len(test)
    train_metrics = json.loads((trained_run / "metrics.json").read_text())
    assert metrics["balanced_accuracy"] == pytest.approx(train_metrics["balanced_accuracy"], abs=1e-6)
    assert (out / "report.html").is_file()

    seen = splits[splits["split"] == "train"].head(10)
    gt_seen = tmp_path / "seen.csv"
    _write_onehot(gt_seen, seen["image_id"].tolist(), seen["label"].tolist())
    capsys.readouterr()
    assert main(["-q", "evaluate", str(trained_run), "--dataset", "onehot-csv", "--csv", str(gt_seen), "--image-dir",
                 images, "--out", str(tmp_path / "e2")]) == 2
    assert "used to train or validate" in capsys.readouterr().err


def test_predict_formats(trained_run: Path, shared_data: Path, tmp_path: Path,
                         capsys: pytest.CaptureFixture[str]) -> None:
    folder = shared_data / "ham10000" / "images_600x450"
    images = sorted(folder.glob("*.jpg"))[:3]
    capsys.readouterr()
    assert main(["-q", "predict", str(trained_run), *map(str, images), "--format", "json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert len(results) == 3
    for r in results:
        assert len(r["top"]) == 3
        assert abs(sum(r["probabilities"].values()) - 1) < 1e-4
        assert r["triage_priority"] in (1, 2, 3)
        assert r["top"][0]["probability"] >= r["top"][1]["probability"] >= r["top"][2]["probability"]
    out_csv = tmp_path / "p.csv"
    assert main(["-q", "predict", str(trained_run), str(images[0]), "--format", "csv", "--out", str(out_csv)]) == 0
    frame = pd.read_csv(out_csv)
    assert list(frame.columns) == ["image", "prediction", "triage_priority", "triage_rule", "triage_reason", "unsure",
                                   "ood", "seen_in_training", "error", "akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]
    assert frame.loc[0, "triage_rule"] in ("top-1", "operating-threshold")
    bad = tmp_path / "bad.jpg"
    bad.write_text("not an image")
    assert main(["-q", "predict", str(trained_run), str(bad), str(images[0])]) == 1
    captured = capsys.readouterr()
    assert "not a recognised image" in captured.err and str(images[0]) in captured.out
