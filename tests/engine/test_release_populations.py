"""A release trained on several populations: each population's test split scored on its own, the card names them."""

from __future__ import annotations

import json
from pathlib import Path

from lesionlab.builtin.card import card_markdown
from lesionlab.builtin.registry import builtin_dir
from lesionlab.engine.release import _populations, card_test_sets, limitations


def test_a_merged_dataset_is_scored_per_source() -> None:
    options = {"sources": [{"dataset": "ham10000"}, {"dataset": "isic-archive"}], "taxonomy": "ham7"}
    assert card_test_sets("merged", options) == ["ham10000", "isic-archive"]
    assert card_test_sets("ham10000", {}) == ["ham10000"]


def test_the_limitations_name_the_training_populations() -> None:
    one, two = limitations(["ham10000"]), limitations(["ham10000", "isic-archive"])
    assert "HAM10000" in one[1] and "ISIC Archive" not in one[1]
    assert "HAM10000" in two[1] and "ISIC Archive" in two[1]
    assert len(one) == len(two) and one[0] == two[0]


def test_the_card_lists_each_population_with_its_validation_figures(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "data_summary.json").write_text(json.dumps({
        "sources": {"ham10000": 10015, "isic-archive": 2231}, "source_check": {"balanced_accuracy": 0.888}}))
    (run / "val_by_source.json").write_text(json.dumps({
        "ham10000": {"n": 1503, "balanced_accuracy": 0.74, "mel_auc": 0.88, "lesions": 1120},
        "isic-archive": {"n": 336, "balanced_accuracy": 0.64, "mel_auc": 0.73},
        "worst": {"balanced_accuracy": 0.64}}))
    pops = _populations(run, ["ham10000", "isic-archive"])
    assert pops["populations"]["isic-archive"] == {"images": 2231,
                                                   "validation": {"n": 336, "balanced_accuracy": 0.64, "mel_auc": 0.73}}
    assert pops["source_shortcut_balanced_accuracy"] == 0.888
    assert _populations(run, ["ham10000"]) == {}
    card = json.loads((builtin_dir() / "card.json").read_text())
    card["training"].update(pops)
    text = card_markdown(card)
    assert "population isic-archive: 2231 images; validation (336 images" in text
    assert "melanoma AUC 0.730" in text and "balanced accuracy 0.888" in text
