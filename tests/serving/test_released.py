"""Released (built-in) models: packaging a run, the model card, and predict/serve/evaluate without a model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from lesionlab.builtin import registry
from lesionlab.cli import main
from lesionlab.commands.common import split_model_argument
from lesionlab.config import ConfigError
from lesionlab.evaluation.card_metrics import card_metrics, lesion_bootstrap


@pytest.fixture(scope="module")
def released(serving_run: Path, shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from lesionlab.engine.release import package_release

    out = tmp_path_factory.mktemp("released") / "ham7-lite2"
    package_release(serving_run, out, name="ham7-lite2", data_root=shared_data, command="lesionlab train ...",
                    n_boot=50)
    return out


def test_package_holds_half_precision_weights_onnx_and_a_card(released: Path, serving_run: Path) -> None:
    assert {p.name for p in released.iterdir()} >= {"model.pt", "model.onnx", "splits.csv", "config.yaml",
                                                   "card.json"}
    blob = torch.load(released / "model.pt", map_location="cpu", weights_only=False)
    assert all(v.dtype == torch.float16 for v in blob["state_dict"].values() if v.is_floating_point())
    card = json.loads((released / "card.json").read_text())
    (own,) = card["evaluations"].values()
    test_ids = pd.read_csv(serving_run / "splits.csv", dtype=str).query("split == 'test'")["image_id"]
    assert own["n_images"] == len(test_ids)  # exactly the held-out test split, nothing it saw
    for fig in own["figures"].values():
        assert (fig["lo"] <= fig["value"] + 1e-9 and fig["value"] <= fig["hi"] + 1e-9) or np.isnan(fig["lo"])
    assert "non-commercial" in card["licence_note"] and card["intended_use"] and card["limitations"]


def test_packaged_model_predicts_like_the_run(released: Path, serving_run: Path, unseen_images: list[Path]) -> None:
    from lesionlab.serving.predictor import Predictor

    a = Predictor.load(serving_run).predict(unseen_images[:4])
    b = Predictor.load(released).predict(unseen_images[:4])
    for x, y in zip(a, b, strict=True):
        assert np.allclose(list(x.probabilities.values()), list(y.probabilities.values()), atol=0.02)


def test_builtin_model_is_the_default_everywhere(released: Path, monkeypatch: pytest.MonkeyPatch,
                                                 unseen_images: list[Path], capsys: pytest.CaptureFixture,
                                                 shared_data: Path, tmp_path: Path) -> None:
    from lesionlab.engine.evaluate import SeenDataError
    from lesionlab.serving.predictor import Predictor

    monkeypatch.setattr(registry, "PACKAGE_DIR", released.parent)
    assert Predictor.pretrained().card.name == "ham7-lite2"
    assert Predictor.load(None).card.model_card["name"] == "ham7-lite2"
    assert registry.builtin_dir("ham7-lite0") == registry.builtin_dir("builtin:ham7-lite0") == released  # old name
    assert main(["-q", "predict", str(unseen_images[0]), "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out[0]["triage_priority"] in (1, 2, 3)
    assert main(["card", "builtin"]) == 0
    text = capsys.readouterr().out
    assert "# Model card: ham7-lite2" in text and "95 %" in text and "non-commercial" in text
    with pytest.raises(SeenDataError):  # the images it trained on are refused
        from lesionlab.config import DataConfig
        from lesionlab.engine.evaluate import evaluate_run

        evaluate_run(released, DataConfig(root=str(shared_data), max_samples=400), out_dir=tmp_path, progress=False)


def test_missing_builtin_files_say_what_to_do(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(registry, "PACKAGE_DIR", tmp_path)
    with pytest.raises(FileNotFoundError, match="not shipped"):
        registry.builtin_dir()
    with pytest.raises(KeyError, match="ham7-lite2"):
        registry.builtin_dir("no-such-model")


def test_model_argument_is_optional(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.pt").write_bytes(b"")
    img = tmp_path / "a.jpg"
    img.write_bytes(b"")
    assert split_model_argument(None, [str(run), str(img)]) == (str(run), [str(img)])
    assert split_model_argument(None, [str(img)]) == (None, [str(img)])
    assert split_model_argument(None, ["builtin", str(img)]) == ("builtin", [str(img)])
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"")
    assert split_model_argument(str(onnx), [str(img)]) == (str(onnx), [str(img)])
    with pytest.raises(FileNotFoundError, match="not found"):  # a given model that does not exist: no fall-back
        split_model_argument(str(tmp_path / "missing.onnx"), [str(img)])
    with pytest.raises(ConfigError, match="give the images"):
        split_model_argument(None, [str(run)])


def test_lesion_bootstrap_resamples_whole_lesions() -> None:
    y = np.array([0, 0, 1, 1, 1, 0])
    p = np.eye(2)[[0, 0, 1, 0, 1, 0]].astype(float)
    acc = {"acc": lambda yy, pp: float((pp.argmax(1) == yy).mean())}
    out = lesion_bootstrap(y, p, ["a", "a", "b", "b", "c", "d"], acc, n_boot=200)["acc"]
    assert out["value"] == pytest.approx(5 / 6) and out["lo"] <= out["value"] <= out["hi"] <= 1
    preds = pd.DataFrame({"truth": ["mel", "nv", "mel", "nv"], "p_mel": [0.9, 0.2, 0.3, 0.1],
                          "p_nv": [0.1, 0.8, 0.7, 0.9]})
    summary = card_metrics(preds, ["mel", "nv"], {"mel": 0.25}, ["1", "2", "3", "4"], n_boot=50, positive="mel")
    figs = summary["figures"]
    assert figs["priority1_sensitivity"]["value"] == 1.0  # the 0.3 melanoma reaches the 0.25 operating threshold
    assert figs["recall_mel"]["value"] == 0.5 and figs["auc_mel"]["value"] == 1.0


def test_the_shipped_builtin_model(unseen_images: list[Path], shared_data: Path, tmp_path: Path) -> None:
    """The model inside the package: loads without training, matches its ONNX export, refuses its training images."""
    from lesionlab.config import DataConfig
    from lesionlab.engine.evaluate import SeenDataError, evaluate_run
    from lesionlab.serving.predictor import Predictor

    folder = registry.builtin_dir()
    eager = Predictor.pretrained()
    assert eager.class_names == ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")
    card = eager.card.model_card
    assert {"ham10000-test", "ph2"} <= set(card["evaluations"]) and "non-commercial" in card["licence_note"]
    assert sum(card["files_mb"].values()) <= 25
    assert eager.predict(unseen_images[:1])[0].ood is not None  # it carries its OOD detector
    onnx = Predictor.load(folder / "model.onnx" if (folder / "model.onnx").is_file() else folder / "onnx")
    for a, b in zip(eager.predict(unseen_images[:3]), onnx.predict(unseen_images[:3]), strict=True):
        assert np.allclose(list(a.probabilities.values()), list(b.probabilities.values()), atol=1e-3)
    with pytest.raises(SeenDataError):
        evaluate_run("builtin", DataConfig(root=str(shared_data), max_samples=400), out_dir=tmp_path, progress=False)


@pytest.fixture(scope="module")
def released_ensemble(released: Path, serving_run: Path, shared_data: Path,
                      tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An ensemble folder (two members: the serving run twice) released with int8 weights over an earlier release."""
    import shutil

    from lesionlab.engine.release import package_release
    from lesionlab.models.ensemble import write_manifest

    ensemble = tmp_path_factory.mktemp("ensemble")
    write_manifest(ensemble, [serving_run / "model.pt", serving_run / "model.pt"], extra={"roles": ["a", "b"]})
    shutil.copy(serving_run / "config.yaml", ensemble / "config.yaml")
    out = tmp_path_factory.mktemp("released") / "ens"
    shutil.copytree(released, out)  # the earlier single-model release in the same folder is replaced whole
    package_release(ensemble, out, name="ens", data_root=shared_data, n_boot=20, weights="int8")
    return out


def test_release_refuses_a_folder_that_is_not_an_earlier_release(serving_run: Path, tmp_path: Path) -> None:
    from lesionlab.engine.release import package_release

    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="holds no earlier release"):
        package_release(serving_run, tmp_path, name="x", data_root=tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_a_bad_run_leaves_an_earlier_release_untouched(released: Path, serving_run: Path, tmp_path: Path) -> None:
    import shutil

    from lesionlab.engine.release import package_release

    earlier = tmp_path / "ham7-lite2"
    shutil.copytree(released, earlier)
    before = sorted(p.name for p in earlier.iterdir())
    with pytest.raises(FileNotFoundError, match=r"no config\.yaml"):  # e.g. `make release` when ls matched nothing
        package_release(tmp_path / "missing", earlier, name="x", data_root=tmp_path)
    with pytest.raises(ValueError, match="would hold the run it packages"):
        package_release(earlier, earlier, name="x", data_root=tmp_path)
    assert sorted(p.name for p in earlier.iterdir()) == before


def test_an_ensemble_releases_its_members_in_int8_with_torch_and_onnx_manifests(
        released_ensemble: Path, serving_run: Path, unseen_images: list[Path], shared_data: Path,
        tmp_path: Path) -> None:
    import onnx

    from lesionlab.config import DataConfig
    from lesionlab.engine.evaluate import SeenDataError, evaluate_run
    from lesionlab.serving.predictor import Predictor

    out = released_ensemble
    assert not (out / "model.pt").exists() and not (out / "model.onnx").exists()  # the earlier release is gone
    assert (out / "ensemble.json").is_file()
    for i in (0, 1):
        assert {p.name for p in (out / "members" / str(i)).iterdir()} >= {"model.pt", "model.onnx", "splits.csv"}
    blob = torch.load(out / "members" / "0" / "model.pt", map_location="cpu", weights_only=False)
    assert any(v.dtype == torch.int8 for v in blob["state_dict"].values())
    graph = onnx.load(str(out / "members" / "0" / "model.onnx")).graph
    assert sum(i.data_type == onnx.TensorProto.INT8 for i in graph.initializer) >= 2  # conv weights stored as int8
    card = json.loads((out / "card.json").read_text())
    assert card["architecture"]["members"] == 2 and card["architecture"]["weights_format"] == "int8"
    assert card["training"]["trained_on"].startswith("an equal-weight ensemble of 2 models") and "a; b" in \
        card["training"]["trained_on"]
    assert "members/1/model.onnx" in card["files_mb"]
    float_ood = torch.load(serving_run / "model.pt", map_location="cpu", weights_only=False)["ood"]
    int8_ood = blob["ood"]  # fitted again on the int8 member's features
    assert int8_ood["method"] == float_ood["method"] and int8_ood["threshold"] != float_ood["threshold"]
    assert not list(out.parent.glob(".*partial"))  # built beside the target and swapped in

    single = Predictor.load(serving_run).predict(unseen_images[:3])
    eager, exported = Predictor.load(out), Predictor.load(out / "onnx")
    assert eager.card.model_card["name"] == "ens" and exported.card.model_card["name"] == "ens"
    for a, b, c in zip(single, eager.predict(unseen_images[:3]), exported.predict(unseen_images[:3]), strict=True):
        assert np.allclose(list(a.probabilities.values()), list(b.probabilities.values()), atol=0.03)  # int8
        assert np.allclose(list(b.probabilities.values()), list(c.probabilities.values()), atol=0.01)
    with pytest.raises(SeenDataError):
        evaluate_run(out, DataConfig(root=str(shared_data), max_samples=400), out_dir=tmp_path, progress=False)


def test_a_released_refit_points_at_its_packaged_train_only_member(tmp_path: Path) -> None:
    import yaml

    from lesionlab.engine.release import _relink_calibration

    sibling, refit, out = tmp_path / "runs" / "sib", tmp_path / "runs" / "refit", tmp_path / "release"
    for folder in (sibling, refit, out / "members" / "0", out / "members" / "1"):
        folder.mkdir(parents=True)
    text = yaml.safe_dump({"name": "x", "train": {"fit_on": "train+val", "calibration_from": str(sibling)}})
    for config in (out / "config.yaml", out / "members" / "1" / "config.yaml"):
        config.write_text(text)
    (out / "members" / "0" / "config.yaml").write_text(yaml.safe_dump({"name": "x", "train": {"fit_on": "train"}}))
    _relink_calibration(out, [sibling, refit])
    assert yaml.safe_load((out / "config.yaml").read_text())["train"]["calibration_from"] == "members/0"
    assert yaml.safe_load((out / "members" / "1" / "config.yaml").read_text())["train"]["calibration_from"] == "../0"
    assert "calibration_from" not in yaml.safe_load((out / "members" / "0" / "config.yaml").read_text())["train"]


def test_a_release_refuses_every_image_any_member_trained_or_validated_on(tmp_path: Path) -> None:
    from lesionlab.engine.release import seen_union

    rows = {"a": [("1", "L1", "train"), ("2", "L2", "val"), ("3", "L3", "test"), ("4", "L4", "val")],
            "b": [("1", "L1", "train"), ("2", "L2", "train"), ("3", "L3", "test"), ("5", "L5", "test")]}
    for name, table in rows.items():
        (tmp_path / name).mkdir()
        pd.DataFrame(table, columns=["image_id", "lesion_id", "split"]).to_csv(tmp_path / name / "splits.csv",
                                                                                 index=False)
    union = seen_union([tmp_path / "a", tmp_path / "b"]).set_index("image_id")["split"].to_dict()
    assert union == {"1": "train", "2": "train", "3": "test", "4": "val", "5": "test"}
