"""``lesionlab ensemble``: trained runs combined into one ensemble folder, its operating point fitted on the
validation lesions no member trained on, the test split scored only when asked."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from lesionlab.cli import main
from lesionlab.config import ConfigError, DataConfig
from lesionlab.engine.evaluate import evaluate_run
from lesionlab.errors import EvaluationInputError

from .test_workflow import _common, _run


@pytest.fixture(scope="module")
def seeds(image_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path, Path]:
    """Two train-only runs of one split (seeds 0 and 1), the refit of the first, and the image cache."""
    out, cache = tmp_path_factory.mktemp("runs"), tmp_path_factory.mktemp("cache")
    for seed in (0, 1):
        assert main(["-q", "train", "--output-dir", str(out), f"name=s{seed}", f"train.seed={seed}",
                     "eval.test=false", *_common(image_folder, cache)]) == 0
    a, b = _run(out, "s0-"), _run(out, "s1-")
    assert main(["-q", "train", "--refit", str(a), f"output_dir={out}"]) == 0
    return a, b, _run(out, "s0-refit-"), cache


def test_seeds_become_one_ensemble_calibrated_on_their_shared_validation_split(seeds, tmp_path: Path,
                                                                               capsys) -> None:
    a, b, _, _ = seeds
    assert main(["ensemble", str(a), str(b), "--name", "pair", "--output-dir", str(tmp_path)]) == 0
    folder = _run(tmp_path, "pair-")
    manifest = json.loads((folder / "ensemble.json").read_text())
    assert [Path(m).parent.name for m in manifest["members"]] == [a.name, b.name]
    assert manifest["weights"] == [0.5, 0.5]
    assert "validation images that no member trained on" in manifest["operating_point"]
    assert "unsure_threshold" in manifest
    assert not (folder / "metrics.json").is_file() and not (folder / "predictions.csv").is_file()  # test unscored
    members = pd.read_csv(folder / "members.csv")
    val = pd.read_csv(a / "splits.csv")["split"].eq("val").sum()
    assert members["validation images"].tolist() == [val, val]
    # without TTA a member's validation balanced accuracy is the one its own run recorded for its best epoch
    for run, recorded in zip((a, b), members["val balanced accuracy"], strict=True):
        assert recorded == pytest.approx(json.loads((run / "val_metrics.json").read_text())["val_bal_acc"], abs=1e-4)
    figures = json.loads((folder / "val_metrics.json").read_text())
    assert figures["val_images"] == val and figures["members"] == 2
    printed = capsys.readouterr().out
    assert "ensemble of 2: validation balanced accuracy" in printed and str(folder.resolve()) in printed


def test_scored_on_test_the_ensemble_is_the_mean_of_its_members(seeds, image_folder: Path, tmp_path: Path) -> None:
    a, b, _, cache = seeds
    assert main(["-q", "ensemble", str(a), str(b), "--name", "pair", "--output-dir", str(tmp_path / "e"),
                 "--weights", "3", "1", "--test"]) == 0
    folder = _run(tmp_path / "e", "pair-")
    assert json.loads((folder / "ensemble.json").read_text())["weights"] == [0.75, 0.25]
    assert (folder / "report.html").is_file() and "Members" in (folder / "report.html").read_text()
    data = DataConfig(dataset="folder", image_dir=str(image_folder), image_size=16, cache_dir=str(cache))
    probs = [pd.read_csv(evaluate_run(m, data, out_dir=tmp_path / m.name, exclude_seen=True,
                                      progress=False).directory / "predictions.csv",
                         dtype={"image_id": str}).set_index("image_id") for m in (a, b)]
    classes = [c for c in probs[0].columns if c.startswith("p_")]
    scored = pd.read_csv(folder / "predictions.csv", dtype={"image_id": str}).set_index("image_id")
    np.testing.assert_allclose(scored.loc[probs[0].index, classes], 0.75 * probs[0][classes] + 0.25 * probs[1][classes],
                               atol=1e-5)


def test_an_ensemble_folder_is_taken_in_and_a_refit_needs_a_copied_operating_point(seeds, tmp_path: Path) -> None:
    a, b, refit, _ = seeds
    from lesionlab.engine.ensemble import ensemble_runs

    with pytest.raises(EvaluationInputError, match="--thresholds-from"):  # the refit trained on the validation split
        ensemble_runs([a, refit], tmp_path, "job")
    assert not list(tmp_path.iterdir())  # refused before anything was written
    job = ensemble_runs([a, refit], tmp_path, "job", thresholds_from=refit)
    manifest = json.loads((job.run.root / "ensemble.json").read_text())
    stored = torch.load(refit / "model.pt", weights_only=False)["preprocessing"]["thresholds"]
    assert manifest["thresholds"] == pytest.approx(stored) and "copied from" in manifest["operating_point"]
    three = ensemble_runs([job.run.root, b], tmp_path, "three", thresholds_from=a)
    members = json.loads((three.run.root / "ensemble.json").read_text())["members"]
    assert [Path(m).parent.name for m in members] == [a.name, refit.name, b.name]


@pytest.mark.parametrize("case", ["twice", "alone", "other test split", "not a run", "other crop"])
def test_bad_member_lists_are_refused_with_the_reason(seeds, image_folder: Path, tmp_path: Path, case: str) -> None:
    a, b, _, cache = seeds
    from lesionlab.engine.ensemble import ensemble_runs

    if case in ("other test split", "other crop"):
        other = "data.split.seed=7" if case == "other test split" else "data.crop=full"
        assert main(["-q", "train", "--output-dir", str(tmp_path / "o"), "name=o", *_common(image_folder, cache),
                     other, "eval.test=false"]) == 0
        sources = [a, _run(tmp_path / "o", "o-")]
        message = "different test splits" if case == "other test split" else "crop='full'"
    else:
        sources, message = {"twice": ([a, b, a], "more than once"), "alone": ([a], "at least two members"),
                            "not a run": ([a, tmp_path], "neither a run directory")}[case]
    with pytest.raises((EvaluationInputError, FileNotFoundError, ConfigError), match=message):
        ensemble_runs(sources, tmp_path / "e", "bad")
    assert not list(tmp_path.glob("e/bad-*"))  # nothing half-made is left behind


def test_members_of_other_image_sizes_share_the_largest_input(seeds, image_folder: Path, tmp_path: Path) -> None:
    """A 16 px and a 24 px run: the ensemble reads 24 px images and resizes them for the 16 px member."""
    import torch.nn.functional as F

    from lesionlab.config import load_run_config
    from lesionlab.models.checkpoint import load_model
    from lesionlab.serving.model_loading import load_artifact

    seed_run, _, _, cache = seeds
    a = Path(shutil.copytree(seed_run, tmp_path / "o" / seed_run.name))  # ood fit below rewrites its model.pt
    assert main(["-q", "train", "--output-dir", str(tmp_path / "o"), "name=big", *_common(image_folder, cache),
                 "data.image_size=24", "eval.test=false"]) == 0
    big = _run(tmp_path / "o", "big-")
    assert main(["-q", "ensemble", str(a), str(big), "--name", "mixed", "--output-dir", str(tmp_path / "e"),
                 "--test"]) == 0
    folder = _run(tmp_path / "e", "mixed-")
    assert load_run_config(folder / "config.yaml").data.image_size == 24
    assert json.loads((folder / "metrics.json").read_text())["n"] > 0
    assert len(pd.read_csv(folder / "members.csv")) == 2

    model, prep, _ = load_artifact(folder)
    assert prep.image_size == 24
    (small, small_prep), (large, large_prep) = load_model(a / "model.pt"), load_model(big / "model.pt")
    x = torch.randn(3, 3, 24, 24, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        resized = F.interpolate(x, size=(16, 16), mode="bicubic", antialias=True, align_corners=False)
        want = ((small.eval()(resized) / small_prep.temperature).softmax(-1)
                + (large.eval()(x) / large_prep.temperature).softmax(-1)) / 2
        got = model.eval()(x).softmax(-1)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    from lesionlab.evaluation.explain import cam_maps

    cams = cam_maps(model, x, [0, 1, 2])  # Grad-CAM averages the members' maps, each brought to 24 px
    assert cams.shape == (3, 24, 24) and np.isfinite(cams).all()

    # each member's OOD detector is fitted at its own size; the ensemble scores 24 px images with both
    from lesionlab.inference.ood import score_images

    assert main(["-q", "ood", "fit", str(folder), "--method", "knn"]) == 0
    model, prep, _ = load_artifact(folder)
    images = np.random.default_rng(0).integers(0, 256, (4, 24, 24, 3), dtype=np.uint8)
    result = score_images(model, images, prep.mean, prep.std)
    assert result is not None and result.normalised.shape == (4,) and np.isfinite(result.normalised).all()


def test_greedy_selection_starts_from_the_best_run_and_stops_when_nothing_helps() -> None:
    from lesionlab.engine.ensemble import greedy_members

    rng = np.random.default_rng(0)
    y = np.tile(np.arange(3), 60)
    good = 2.0 * np.eye(3)[y] + rng.normal(0, 1, (len(y), 3))
    fair = 1.0 * np.eye(3)[y] + rng.normal(0, 1, (len(y), 3))
    noise = [rng.normal(0, 1, (len(y), 3)) for _ in range(3)]
    logits = [n[None] for n in (noise[0], fair, good, noise[1], noise[2])]  # (V=1, N, C) each
    path = greedy_members(logits, [1.0] * 5, y, ("a", "b", "c"), limit=5)
    assert path[0]["member"] == 2 and path[1]["member"] == 1  # the best run, then the only other informative one
    assert 2 <= len(path) < 5  # pure-noise runs lower the ensemble's AUC: the search stops before taking them all
    aucs = [row["val macro AUC"] for row in path]
    assert aucs[2:] == sorted(aucs[2:]) and (len(aucs) < 3 or aucs[2] > aucs[1])


def test_select_keeps_the_runs_chosen_on_validation(seeds, image_folder: Path, tmp_path: Path) -> None:
    a, b, refit, cache = seeds
    from lesionlab.engine.ensemble import ensemble_runs

    assert main(["-q", "train", "--output-dir", str(tmp_path / "o"), "name=c", "train.seed=2",
                 *_common(image_folder, cache), "eval.test=false"]) == 0
    c = _run(tmp_path / "o", "c-")
    result = ensemble_runs([a, b, c], tmp_path / "e", "chosen", select=2)
    folder = result.run.root
    path = pd.read_csv(folder / "selection.csv")
    manifest = json.loads((folder / "ensemble.json").read_text())
    assert len(path) == 2 and [Path(m).parent.name for m in manifest["members"]] == path["member"].tolist()
    assert "chosen greedily on the same" in manifest["selection"] and manifest["weights"] == [0.5, 0.5]
    assert result.metrics["selected_from"] == 3 and result.metrics["members"] == 2
    # the ensemble's validation figures are those of the selection's last step (same members, same images)
    assert result.metrics["val_auc"] == pytest.approx(path["val macro AUC"].iloc[-1], abs=1e-4)
    with pytest.raises(EvaluationInputError, match="--select K needs"):
        ensemble_runs([a, refit], tmp_path / "e", "bad", select=2, thresholds_from=a)
