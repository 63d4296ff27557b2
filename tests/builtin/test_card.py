"""``lesionlab card`` on runs and ensembles (a card computed from metrics.json, marked as not released), unknown
names, and its help text."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from lesionlab.builtin.card import run_card
from lesionlab.cli import build_parser, main

METRICS = {"n": 57, "accuracy": 0.5, "balanced_accuracy": 0.4, "auc_macro": 0.8,
           "per_class": {"mel": {"recall": 0.25}, "nv": {"recall": 0.75}},
           "ci95": {"balanced_accuracy": [0.3, 0.5], "auc_macro": [0.7, 0.9], "priority1_sensitivity": [0.8, 1.0]},
           "triage_operating_point": {"rule": "most severe suspected", "sensitivity": 0.9,
                                      "statement": "priority-1 sensitivity >= 0.9 chosen on validation"}}


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    run = tmp_path / "default-20260101-000000"
    run.mkdir()
    (run / "metrics.json").write_text(json.dumps(METRICS))
    (run / "config.yaml").write_text(yaml.safe_dump({"data": {"dataset": "ham10000", "image_size": 112},
                                                     "model": {"backbone": "efficientnet-lite0"},
                                                     "train": {"epochs": 6, "seed": 1}}))
    return run


def test_card_of_a_run_is_marked_not_released(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["card", str(run_dir)]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"# Run card: {run_dir.name}")
    assert "Not a released model" in text
    assert "| balanced accuracy | 0.400 (0.300–0.500) |" in text
    assert "| priority-1 sensitivity | 0.900 (0.800–1.000) |" in text
    assert "backbone efficientnet-lite0" in text and "mel 0.25" in text


def test_card_json_of_an_ensemble(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (run_dir / "ensemble.json").write_text(json.dumps({"members": ["a/model.pt", "b/model.pt"]}))
    assert main(["card", str(run_dir), "--json"]) == 0
    card = json.loads(capsys.readouterr().out)
    assert card["released"] is False and card["kind"] == "ensemble of 2 members"
    assert card == json.loads(json.dumps(run_card(run_dir)))


def test_card_without_metrics_says_what_to_do(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["card", str(tmp_path)]) == 2
    assert "no metrics.json" in capsys.readouterr().err


def test_card_unknown_name_lists_the_built_in_ones(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["card", "ham7-lite3"]) == 2
    err = capsys.readouterr().err
    assert "Did you mean 'ham7-lite2'" in err and "ham7-lite0, ham7-lite2" in err


def test_card_help_prints_a_plain_percent_sign(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["card", "--help"])
    out = capsys.readouterr().out
    assert "95 % bootstrap" in out and "%%" not in out


def test_the_invariance_benchmark_records_its_figure_in_a_released_card(tmp_path: Path) -> None:
    import importlib.util

    import pandas as pd

    from lesionlab.builtin.card import card_markdown
    from lesionlab.builtin.registry import builtin_dir

    spec = importlib.util.spec_from_file_location(
        "acquisition_invariance", Path(__file__).parents[2] / "benchmarks" / "acquisition_invariance.py")
    assert spec and spec.loader
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    model = tmp_path / "model"
    model.mkdir()
    (model / "card.json").write_text((builtin_dir() / "card.json").read_text())
    table = pd.DataFrame([
        {"model": str(model), "tta": "d4", "canonical": "ham-200x150", "check": "600x450 original vs 200x150 copy",
         "n": 235, "top1_agreement": 0.96, "triage_agreement": 0.9745},
        {"model": str(model), "tta": "d4", "canonical": "none", "check": "600x450 original vs 200x150 copy",
         "n": 235, "top1_agreement": 0.8, "triage_agreement": 0.81}])
    bench.record_in_cards(table, ["--model", str(model), "--card"])
    card = json.loads((model / "card.json").read_text())
    assert card["acquisition_invariance"]["triage_agreement"] == 0.9745  # the first (the model's own) chain
    assert "--card" in card["acquisition_invariance"]["command"]
    assert "same triage priority for 97.5 %" in card_markdown(card)
