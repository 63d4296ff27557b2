"""``lesionlab adapt``: a site temperature and thresholds fitted on a clinic's images, judged by cross-fitting,
written as a model folder that loads like any model; and its refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.special import softmax

from lesionlab.cli import main
from lesionlab.config import DataConfig
from lesionlab.engine.adapt import AdaptationError, adapt
from lesionlab.serving.predictor import Predictor


@pytest.fixture(scope="module")
def adapted(serving_run: Path, shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("adapted") / "ph2-site"
    code = main(["-q", "adapt", str(serving_run), "--dataset", "ph2", "--data-root", str(shared_data),
                 "--out", str(out), "--repeats", "3", "--method", "temperature"])
    assert code == 0
    return out


@pytest.fixture(scope="module")
def head_adapted(serving_run: Path, shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("adapted") / "ph2-head"
    code = main(["-q", "adapt", str(serving_run), "--dataset", "ph2", "--data-root", str(shared_data),
                 "--out", str(out), "--repeats", "2", "--method", "head"])
    assert code == 0
    return out


def test_adapted_folder_records_and_reproduces_the_fit(adapted: Path, serving_run: Path, shared_data: Path) -> None:
    record = json.loads((adapted / "adaptation.json").read_text())
    assert record["base_model"] == str(serving_run.resolve()) and record["images"] == 200
    assert record["method"] == "temperature" and not (adapted / "site_head.npz").exists()
    assert record["classes"] == {"mel": 40, "nv": 160} and record["created"]
    assert record["cross_fitting"]["repeats"] == 3
    for figures in (record["before"], record["after_cross_fitted"]):
        assert 0 <= figures["priority1_sensitivity"] <= 1 and len(figures["priority1_sensitivity_ci95"]) == 2
    base, site = Predictor.load(serving_run), Predictor.load(adapted)
    assert site.prep.temperature == pytest.approx(record["temperature"])
    assert site.prep.thresholds == record["thresholds"]
    image = sorted((shared_data / "ph2" / "images_half").glob("*.jpg"))[0]
    array = base.preprocess(image)[None]
    p_base, p_site = base.predict_arrays(array), site.predict_arrays(array)
    # one view of TTA at a time would make this exact; the mean over flips keeps it close
    expected = softmax(np.log(p_base) / record["temperature"], axis=1)
    assert np.allclose(p_site, expected, atol=0.05) and not np.allclose(p_site, p_base, atol=1e-4)
    (result,) = site.predict([image])
    assert result.seen_in_training is True  # the adaptation images count as seen by the adapted model


def _ph2_subset(shared_data: Path, tmp_path: Path, melanomas: int, nevi: int) -> DataConfig:
    labels = pd.read_csv(shared_data / "ph2" / "PH2_labels.csv")
    rows = pd.concat([labels[labels["diagnosis"] == "melanoma"].head(melanomas),
                      labels[labels["diagnosis"] != "melanoma"].head(nevi)])
    rows.to_csv(tmp_path / "subset.csv", index=False)
    return DataConfig(dataset="ph2", root=str(shared_data), csv=str(tmp_path / "subset.csv"))


@pytest.mark.parametrize(("melanomas", "nevi", "message"), [
    (5, 15, r"20 labelled images are too few to adapt: at least 30"),
    (0, 40, r"all 40 images are of one class \(nv\)"),
    (4, 36, r"4 malignant .* too few .* at least 10"),
])
def test_refusals_say_what_is_needed(serving_run: Path, shared_data: Path, tmp_path: Path, melanomas: int,
                                     nevi: int, message: str) -> None:
    with pytest.raises(AdaptationError, match=message):
        adapt(serving_run, _ph2_subset(shared_data, tmp_path, melanomas, nevi), tmp_path / "out", repeats=1)
    assert not (tmp_path / "out").exists()


def test_refuses_images_the_model_trained_on_and_other_label_sets(serving_run: Path, shared_data: Path,
                                                                  tmp_path: Path) -> None:
    splits = pd.read_csv(serving_run / "splits.csv", dtype=str)
    meta = pd.read_csv(shared_data / "ham10000" / "HAM10000_metadata.csv", dtype=str)
    seen = meta[meta["image_id"].isin(splits.loc[splits["split"] == "train", "image_id"])]
    pd.concat([seen[seen["dx"] == "mel"].head(12), seen[seen["dx"] == "nv"].head(30)]).to_csv(
        tmp_path / "seen.csv", index=False)
    with pytest.raises(AdaptationError, match=r"42 of these images were used to train or validate"):
        adapt(serving_run, DataConfig(dataset="ham10000", root=str(shared_data), csv=str(tmp_path / "seen.csv")),
              tmp_path / "out", repeats=1)
    images = sorted((shared_data / "ph2" / "images_half").glob("*.jpg"))[:40]
    pd.DataFrame({"image": [p.name for p in images], "label": ["psoriasis", "eczema"] * 20}).to_csv(
        tmp_path / "other.csv", index=False)
    with pytest.raises(AdaptationError, match=r"labels \(eczema, psoriasis\) are another label set .* \(ham7"):
        adapt(serving_run, DataConfig(dataset="csv", csv=str(tmp_path / "other.csv"),
                                      image_dir=str(images[0].parent)), tmp_path / "out", repeats=1)


def test_site_head_is_fitted_stored_and_served(head_adapted: Path, serving_run: Path, shared_data: Path) -> None:
    import torch

    from lesionlab.inference.site_head import features_and_logits
    from lesionlab.serving.fastpath import FastPath

    record = json.loads((head_adapted / "adaptation.json").read_text())
    assert record["method"] == "head" and "site head" in record["fitted"]
    assert record["cross_fitting"]["methods_chosen"] == {"head": 4}  # 2 halvings x 2 halves
    assert 0 <= record["cross_fitting"]["mel_auc"]["median"] <= 1
    site, base = Predictor.load(head_adapted), Predictor.load(serving_run)
    assert site.model.head is not None and list(site.model.head.classes) == [4, 5]  # mel, nv: PH2's classes
    images = sorted((shared_data / "ph2" / "images_half").glob("*.jpg"))[:4]
    batch = np.stack([site.preprocess(path) for path in images])
    x = torch.from_numpy(batch).permute(0, 3, 1, 2).float().div(255)
    x = (x - torch.tensor(site.prep.mean).view(1, 3, 1, 1)) / torch.tensor(site.prep.std).view(1, 3, 1, 1)
    with torch.inference_mode():
        features, logits = features_and_logits(base.model, x)
        expected = site.model.head(features, torch.log_softmax(logits / base.prep.temperature, -1))
        assert torch.allclose(site.model(x), expected, atol=1e-5)
        # the classes PH2 lacks keep the base model's calibrated log-probability
        kept = [i for i in range(len(site.class_names)) if i not in (4, 5)]
        assert torch.allclose(expected[:, kept], torch.log_softmax(logits / base.prep.temperature, -1)[:, kept],
                              atol=1e-5)
    probs = site.predict_arrays(batch)
    assert np.allclose(probs.sum(1), 1, atol=1e-5)
    # the server's fast path takes the general path for an adapted model: the same numbers
    assert np.allclose(FastPath(site).predict(batch, site.prep.tta)[0], probs, atol=1e-5)


def test_adapt_refuses_an_unknown_method(serving_run: Path, shared_data: Path, tmp_path: Path) -> None:
    from lesionlab.registry import UnknownNameError

    with pytest.raises(UnknownNameError, match="adaptation method"):
        adapt(serving_run, DataConfig(dataset="ph2", root=str(shared_data)), tmp_path / "out", method="finetune")


def test_auto_keeps_to_recalibration_when_the_model_gives_no_features() -> None:
    from scipy.special import log_softmax

    from lesionlab.engine.adapt import ADAPT_METHODS, SiteViews

    rng = np.random.default_rng(0)
    classes = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]
    y = np.array([4] * 12 + [5] * 28)
    views = SiteViews(log_softmax(rng.normal(size=(2, 40, 7)) + 2 * np.eye(7)[y], axis=-1), None)  # an old ONNX export
    args = (views, np.arange(40), y, np.arange(40).astype(str), classes, {}, 0.9)
    site = ADAPT_METHODS.get("auto")(*args)
    assert site.head is None and site.method == "auto: temperature (no head possible)" and "mel" in site.thresholds
    with pytest.raises(AdaptationError, match="gives no features"):
        ADAPT_METHODS.get("head")(*args)
