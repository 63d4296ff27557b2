"""Real runs (a few hundred HAM10000 images, 32 px, tiny backbone): metadata fusion and the frozen-backbone feature
cache through ``train()``, the checkpoint and the predictor. The test split is never trained on."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from lesionlab.config import load_config
from lesionlab.engine.train import train
from lesionlab.models.checkpoint import load_model
from lesionlab.models.features import weights_fingerprint
from tests.conftest import TINY

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def subset_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generic-CSV dataset of 240 real HAM10000 images (classes interleaved) with age, sex and site columns."""
    from tests.conftest import _shared_data_dir

    root = _shared_data_dir()
    if not (root / "ham10000" / "HAM10000_metadata.csv").is_file():
        pytest.skip("real data not found")
    meta = pd.read_csv(root / "ham10000" / "HAM10000_metadata.csv")
    lesions = meta.groupby("dx")["lesion_id"].apply(lambda s: list(dict.fromkeys(s)))
    picked: set[str] = set()
    for dx, ids in lesions.items():
        picked |= set(ids[: 40 if dx != "nv" else 60])
    rows = meta[meta["lesion_id"].isin(picked)].copy()
    rows["image"] = [str(root / "ham10000" / "images_200x150" / f"{i}.jpg") for i in rows["image_id"]]
    path = tmp_path_factory.mktemp("subset") / "ham_subset.csv"
    rows[["image", "dx", "lesion_id", "age", "sex", "localization"]].to_csv(path, index=False)
    return path


def _cfg(csv: Path, out: Path, *extra: str):
    return load_config(None, [
        *TINY, "data.dataset=csv", f"data.csv={csv}", "data.image_size=32", f"data.cache_dir={out / 'cache'}",
        f"output_dir={out / 'runs'}", "train.epochs=2", "train.batch_size=32", *extra])


def test_metadata_fusion_run(subset_csv: Path, tmp_path: Path) -> None:
    result = train(_cfg(subset_csv, tmp_path, "model.metadata=true", "model.head=gap-bn-dropout"))
    model, _ = load_model(result.run.model)
    spec = model.metadata_spec
    assert spec is not None and "back" in spec.sites and spec.fields == ("age", "sex", "site")
    splits = pd.read_csv(result.run.splits)
    preds = pd.read_csv(result.run.predictions)
    assert set(preds["image_id"]) == set(splits.loc[splits["split"] == "test", "image_id"])
    assert 0 <= result.metrics["balanced_accuracy"] <= 1

    from lesionlab.serving.predictor import Predictor

    predictor = Predictor.load(result.run.root)
    image = str(subset_csv.parent / "x.jpg")
    img_path = pd.read_csv(subset_csv)["image"].iloc[0]
    Path(image).write_bytes(Path(img_path).read_bytes())
    without = predictor.predict([image])[0].probabilities
    again = predictor.predict([image], metadata=[None])[0].probabilities
    assert without == again  # absent metadata = every field missing
    with_meta = predictor.predict([image], metadata=[{"age": 80, "sex": "male", "site": "face"}])[0].probabilities
    assert with_meta != without  # the metadata reaches the model


def test_frozen_backbone_trains_on_the_feature_cache(subset_csv: Path, tmp_path: Path) -> None:
    cfg = _cfg(subset_csv, tmp_path, "model.freeze_backbone=true", "model.metadata=true", "train.epochs=3")
    first = train(cfg)
    feature_dirs = list((tmp_path / "cache" / "features").iterdir())
    assert len(feature_dirs) == 1
    model, _ = load_model(first.run.model)
    # The shipped backbone (weights and BatchNorm statistics) is exactly the one the cached features came from.
    assert json.loads((feature_dirs[0] / "meta.json").read_text())["weights"] == weights_fingerprint(model.backbone)
    history = pd.read_csv(first.run.history)
    assert len(history) == 3 and history["val_bal_acc"].notna().all()
    second = train(cfg)  # same data, backbone and weights: the cache is reused, not rebuilt
    assert list((tmp_path / "cache" / "features").iterdir()) == feature_dirs
    assert json.loads((second.run.root / "metrics.json").read_text())["n"] == first.metrics["n"]
