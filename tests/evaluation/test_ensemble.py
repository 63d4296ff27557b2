"""Ensemble artifacts: identical members equal the single model; weights and temperatures combine as documented;
``evaluate`` refuses every image any member trained or validated on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from lesionlab.config import DataConfig
from lesionlab.engine.core.run_data import load_run
from lesionlab.engine.evaluate import SeenDataError, evaluate_run
from lesionlab.errors import EvaluationInputError
from lesionlab.inference.calibration import probs_from_view_logits
from lesionlab.inference.predict import predict_probs, predict_view_logits
from lesionlab.models.checkpoint import load_model
from lesionlab.models.ensemble import combine_member_probs, normalise_weights, read_manifest, write_manifest
from lesionlab.serving.predictor import Predictor
from tests.conftest import HAM7_CLASSES as CLASSES


def test_an_ensemble_of_identical_models_equals_the_single_model(tmp_path: Path, run_factory,
                                                                 random_images: np.ndarray) -> None:
    single = run_factory("single", tta="flips", temperature=1.6)
    ens = tmp_path / "ens"
    members = []
    for k in range(3):
        (ens / f"fold-{k}").mkdir(parents=True)
        members.append(ens / f"fold-{k}" / "model.pt")
        members[-1].write_bytes((single / "model.pt").read_bytes())
    write_manifest(ens, members, weights=[1, 2, 3])
    model, prep = load_model(single / "model.pt")
    expected = predict_probs(model, random_images, prep.mean, prep.std, temperature=prep.temperature, tta=prep.tta)
    loaded = Predictor.load(ens)
    assert loaded.backend == "ensemble"
    np.testing.assert_allclose(loaded.predict_arrays(random_images), expected, atol=1e-6)
    one = Predictor.load(single)
    arrays = [Image.fromarray(im) for im in random_images[:3]]
    for a, b in zip(loaded.predict(arrays), one.predict(arrays), strict=True):
        assert a.label == b.label and a.probabilities == pytest.approx(b.probabilities, abs=1e-6)


def test_combined_member_probabilities_equal_the_loaded_ensemble(tmp_path: Path, run_factory,
                                                                  random_images: np.ndarray) -> None:
    runs = [run_factory(f"m{k}", seed=k, tta="flips", temperature=t) for k, t in enumerate((0.7, 1.0, 2.2))]
    weights = [0.5, 0.2, 0.3]
    write_manifest(tmp_path, [r / "model.pt" for r in runs], weights=weights)
    logits, temps = [], []
    for r in runs:
        model, prep = load_model(r / "model.pt")
        logits.append(predict_view_logits(model, random_images, prep.mean, prep.std, tta=prep.tta))
        temps.append(prep.temperature)
    expected = combine_member_probs(logits, temps, weights)
    np.testing.assert_allclose(Predictor.load(tmp_path / "ensemble.json").predict_arrays(random_images), expected,
                               atol=1e-6)
    with pytest.raises(EvaluationInputError, match=r"splits\.csv"):  # evaluation needs to know what they saw
        load_run(tmp_path / "ensemble.json")
    single = probs_from_view_logits(logits[0], temps[0])
    np.testing.assert_allclose(combine_member_probs([logits[0]] * 2, [temps[0]] * 2), single, atol=1e-12)


def test_manifest_errors_are_specific(tmp_path: Path, run_factory) -> None:
    with pytest.raises(EvaluationInputError, match="non-negative"):
        normalise_weights([1, -1], 2)
    with pytest.raises(EvaluationInputError, match="2 non-negative"):
        normalise_weights([1, 2, 3], 2)
    run = run_factory("a")
    path = write_manifest(tmp_path, [run / "model.pt"])
    (run / "model.pt").unlink()
    with pytest.raises(EvaluationInputError, match="not found"):
        read_manifest(path)
    (tmp_path / "ensemble.json").write_text("{not json")
    with pytest.raises(EvaluationInputError, match="readable"):
        read_manifest(tmp_path / "ensemble.json")


def _folder_dataset(root: Path) -> list[str]:
    rng = np.random.default_rng(1)
    ids = []
    for c in CLASSES:
        (root / c).mkdir(parents=True)
        for k in range(3):
            ids.append(f"{c}/{c}_{k}")  # the folder dataset's image ids are class/stem
            Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(root / c / f"{c}_{k}.png")
    return ids


def test_evaluate_refuses_images_any_member_saw(tmp_path: Path, run_factory) -> None:
    ids = _folder_dataset(tmp_path / "data")

    def splits(train_ids: list[str]) -> pd.DataFrame:
        return pd.DataFrame({"image_id": ids, "lesion_id": [f"L{i}" for i in ids], "label": "nv",
                             "split": ["train" if i in train_ids else "test" for i in ids]})

    a = run_factory("a", seed=0, splits=splits(ids[:2]))
    b = run_factory("b", seed=0, splits=splits(ids[2:5]))
    (tmp_path / "ens").mkdir()
    write_manifest(tmp_path / "ens", [a / "model.pt", b / "model.pt"])
    cfg = DataConfig(dataset="folder", image_dir=str(tmp_path / "data"), cache_dir=str(tmp_path / "cache"))
    with pytest.raises(SeenDataError, match="5 of 21"):
        evaluate_run(tmp_path / "ens", cfg, progress=False)
    ens = evaluate_run(tmp_path / "ens", cfg, exclude_seen=True, progress=False, out_dir=tmp_path / "e1")
    assert ens.excluded == 5 and ens.metrics["n"] == 16
    single = evaluate_run(a, cfg, exclude_seen=True, progress=False, out_dir=tmp_path / "e2")
    assert single.excluded == 2
    preds = pd.read_csv(tmp_path / "e1" / "predictions.csv")
    assert not set(preds["image_id"]) & set(ids[:5])
    assert (tmp_path / "e1" / "calibration.json").is_file() and (tmp_path / "e1" / "figures" / "pr.png").is_file()
