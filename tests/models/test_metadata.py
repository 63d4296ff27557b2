"""Metadata fusion: encoding (normalised age + missing flag, one-hot with unknown), the branch, metadata dropout,
the metadata-aware classifier and its checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from lesionlab.config import ConfigError, ModelConfig, load_config
from lesionlab.models.checkpoint import Preprocessing, load_model, save_model
from lesionlab.models.classifier import create_model
from lesionlab.models.metadata import MetadataBranch, MetadataSpec

TABLE = pd.DataFrame({"age": [30.0, 50.0, np.nan, 70.0], "sex": ["male", "female", "unknown", "male"],
                      "site": ["back", "face", "unknown", "back"]})


def test_fit_and_layout() -> None:
    spec = MetadataSpec.fit(TABLE)
    assert spec.age_mean == pytest.approx(50.0)
    assert spec.age_std == pytest.approx(20.0)
    assert spec.sexes == ("female", "male", "unknown")
    assert spec.sites == ("back", "face", "unknown")
    assert spec.layout == {"age": (0, 2), "sex": (2, 5), "site": (5, 8)}
    assert spec.dim == 8


def test_encode_rows() -> None:
    spec = MetadataSpec.fit(TABLE)
    enc = spec.encode(TABLE)
    assert enc.dtype == np.float32 and enc.shape == (4, 8)
    np.testing.assert_allclose(enc[0], [-1, 0, 0, 1, 0, 1, 0, 0])  # age 30 -> -1 sd, male, back
    np.testing.assert_allclose(enc[2], [0, 1, 0, 0, 1, 0, 0, 1])  # all missing: flag, unknown, unknown
    np.testing.assert_allclose(spec.missing_vector(), enc[2])


@pytest.mark.parametrize(("record", "expected"), [
    (None, [0, 1, 0, 0, 1, 0, 0, 1]),
    ({}, [0, 1, 0, 0, 1, 0, 0, 1]),
    ({"age": 90, "sex": "F", "site": "Face"}, [2, 0, 1, 0, 0, 0, 1, 0]),
    ({"age_approx": "40", "gender": "m", "localization": "back"}, [-0.5, 0, 0, 1, 0, 1, 0, 0]),
    ({"age": -3, "sex": "other", "anatom_site_general": "palms/soles"}, [0, 1, 0, 0, 1, 0, 0, 1]),  # unseen -> unknown
    ({"age": float("nan"), "site": None}, [0, 1, 0, 0, 1, 0, 0, 1]),
])
def test_encode_records(record: dict | None, expected: list[float]) -> None:
    spec = MetadataSpec.fit(TABLE)
    np.testing.assert_allclose(spec.encode([record])[0], expected)


def test_field_subset_and_round_trip() -> None:
    spec = MetadataSpec.fit(TABLE, fields=("sex",))
    assert spec.dim == 3
    np.testing.assert_allclose(spec.encode([{"sex": "female", "age": 3}])[0], [1, 0, 0])
    again = MetadataSpec.from_dict(spec.to_dict())
    assert again == spec and again.layout == spec.layout
    with pytest.raises(ValueError, match="subset"):
        MetadataSpec(("age", "weight"))


def test_real_tables(shared_data: Path) -> None:
    """HAM10000 and ISIC 2019 columns encode without a missing age being mistaken for a value."""
    from lesionlab.config import DataConfig
    from lesionlab.data.datasets import load_dataset

    ham = load_dataset(DataConfig(root=str(shared_data), image_dir=str(shared_data / "ham10000" / "images_200x150")))
    spec = MetadataSpec.fit(ham.table)
    assert "lower extremity" in spec.sites and "unknown" in spec.sites
    enc = spec.encode(ham.table.head(500))
    assert np.isfinite(enc).all()
    missing_age = ham.table.head(500)["age"].isna().to_numpy()
    np.testing.assert_array_equal(enc[:, 1] == 1, missing_age)
    isic = pd.read_csv(shared_data / "isic2019" / "ISIC_2019_Training_Metadata.csv", nrows=300)
    enc = spec.encode(isic.to_dict("records"))  # raw ISIC column names (age_approx, anatom_site_general)
    assert np.abs(enc[:, 0]).sum() > 0 and (enc[:, 2:].sum(1) == 2).all()  # ages used; one sex and one site each
    np.testing.assert_array_equal(enc[:, 1] == 1, isic["age_approx"].isna().to_numpy())


def test_branch_shapes_gradients_and_dropout() -> None:
    torch.manual_seed(0)
    spec = MetadataSpec.fit(TABLE)
    branch = MetadataBranch(spec, field_dropout=0.1).train()
    meta = torch.from_numpy(spec.encode(pd.concat([TABLE] * 4)))
    out = branch(meta)
    assert out.shape == (16, branch.out_features)
    out.sum().backward()
    for name, p in branch.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    with pytest.raises(ValueError, match=r"\(batch, 8\)"):
        branch(torch.zeros(2, 5))


def test_metadata_dropout_rate_and_eval_determinism() -> None:
    torch.manual_seed(0)
    spec = MetadataSpec.fit(TABLE)
    branch = MetadataBranch(spec, field_dropout=0.1)
    meta = torch.from_numpy(spec.encode([{"age": 30, "sex": "male", "site": "back"}] * 20000))
    dropped = branch.drop_fields(meta)
    for start, end in spec.layout.values():
        rate = (dropped[:, start:end] == branch.missing[start:end]).all(1).float().mean().item()
        assert 0.09 < rate < 0.11  # each field independently encoded as missing with p = 0.1
    branch.eval()
    x = meta[:8]
    torch.testing.assert_close(branch(x), branch(x))


def test_metadata_classifier_forward_backward_and_missing() -> None:
    torch.manual_seed(0)
    spec = MetadataSpec.fit(TABLE)
    model = create_model(ModelConfig(backbone="tiny-resnet", head="gap-bn-dropout", metadata=True), 3,
                         metadata_spec=spec).train()
    assert model.metadata_spec == spec
    assert model.head[1].num_features == model.num_features + model.metadata.out_features
    x = torch.randn(4, 3, 32, 32)
    meta = torch.from_numpy(spec.encode(TABLE))
    logits = model(x, meta=meta)
    assert logits.shape == (4, 3)
    nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2, 0])).backward()
    assert all(p.grad is not None for p in model.metadata.parameters())
    model.eval()
    with torch.no_grad():  # inference without metadata = every field missing
        torch.testing.assert_close(model(x), model(x, meta=torch.from_numpy(spec.encode([None] * 4))))
        assert not torch.allclose(model(x), model(x, meta=meta))  # the metadata changes the prediction


def test_image_only_model_refuses_metadata() -> None:
    model = create_model(ModelConfig(backbone="tiny-resnet"), 2).eval()
    with pytest.raises(ValueError, match="without metadata"):
        model(torch.randn(1, 3, 32, 32), meta=torch.zeros(1, 8))


def test_checkpoint_keeps_the_encoder(tmp_path: Path) -> None:
    torch.manual_seed(0)
    spec = MetadataSpec.fit(TABLE, fields=("age", "site"))
    cfg = ModelConfig(backbone="tiny-resnet", metadata=True, metadata_fields=("age", "site"))
    model = create_model(cfg, 3, metadata_spec=spec).eval()
    prep = Preprocessing(image_size=32, crop="pad", mean=(0.5,) * 3, std=(0.5,) * 3, class_names=("a", "b", "c"),
                         taxonomy="custom")
    save_model(tmp_path / "model.pt", model, cfg, prep)
    loaded, _ = load_model(tmp_path / "model.pt")
    assert loaded.metadata_spec == spec
    x, meta = torch.randn(2, 3, 32, 32), torch.from_numpy(spec.encode(TABLE.head(2)))
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, meta=meta), model(x, meta=meta))


def test_config_validation() -> None:
    cfg = load_config(None, ["model.metadata=true", "model.metadata_fields=age,site", "model.metadata_dropout=0.2"])
    assert cfg.model.metadata_fields == ("age", "site")
    with pytest.raises(ConfigError, match="metadata_fields"):
        load_config(None, ["model.metadata_fields=age,weight"])
    with pytest.raises(ConfigError, match="metadata_dropout"):
        load_config(None, ["model.metadata_dropout=1.5"])
    with pytest.raises(ConfigError, match="differ"):
        create_model(ModelConfig(backbone="tiny-resnet", metadata=True, metadata_fields=("age",)), 2,
                     metadata_spec=MetadataSpec.fit(TABLE))
