"""Merged datasets: a source column, a common taxonomy, duplicates, lesion-disjoint splits across sources, the
source-shortcut check (synthetic sources that do / do not differ) and the real HAM10000 600x450 + 200x150 merge."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from lesionlab.cli import main
from lesionlab.config import ConfigError, DataConfig
from lesionlab.data.datasets import load_dataset
from lesionlab.data.merge import merge_datasets
from lesionlab.data.prepare import prepare_data
from lesionlab.data.source_check import source_shortcut_check
from lesionlab.data.splits import check_no_leakage
from lesionlab.data.table import DatasetError

HAM_LABELS = ["mel", "nv", "bcc", "bkl", "akiec", "df"]
ISIC_LABELS = ["MEL", "NV", "BCC", "SCC", "AK", "BKL"]


def _write_source(folder: Path, prefix: str, labels: list[str], n: int, colour: tuple[int, int, int] | None,
                  seed: int, shared_lesions: int = 0) -> Path:
    """``n`` 24x24 PNGs (noise around ``colour``, or pure noise) + labels.csv; the first ``shared_lesions`` rows
    use lesion ids shared with the other source."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        base = np.array(colour if colour else rng.integers(60, 200, 3))
        pixels = np.clip(base + rng.normal(0, 25, (24, 24, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{prefix}{i:03d}.png")
        lesion = f"shared{i}" if i < shared_lesions else f"{prefix}lesion{i // 2}"
        rows.append({"path": f"{prefix}{i:03d}.png", "label": labels[i % len(labels)], "lesion_id": lesion})
    pd.DataFrame(rows).to_csv(folder / "labels.csv", index=False)
    return folder / "labels.csv"


@pytest.fixture
def two_sources(tmp_path: Path) -> tuple[Path, Path]:
    a = _write_source(tmp_path / "a", "a", HAM_LABELS, 60, (200, 120, 110), 0, shared_lesions=6)
    b = _write_source(tmp_path / "b", "b", ISIC_LABELS, 60, (90, 90, 140), 1, shared_lesions=6)
    return a, b


def _merged_cfg(a: Path, b: Path, tmp_path: Path, **options) -> DataConfig:
    sources = [{"dataset": "csv", "csv": str(a), "name": "clinic-a"}, {"dataset": "csv", "csv": str(b), "name": "b"}]
    return DataConfig(dataset="merged", root=str(tmp_path), image_size=16, cache_dir=str(tmp_path / "cache"),
                      options={"sources": sources, **options})


def test_merge_into_a_common_taxonomy(two_sources: tuple[Path, Path], tmp_path: Path) -> None:
    ds = load_dataset(_merged_cfg(*two_sources, tmp_path, taxonomy="triage"))
    assert ds.name == "merged" and ds.taxonomy.name == "triage" and len(ds) == 120
    assert ds.table["source"].value_counts().to_dict() == {"clinic-a": 60, "b": 60}
    assert set(ds.table["label"]) == {"P1", "P2", "P3"}
    a = ds.table[ds.table["source"] == "clinic-a"]
    assert (a.loc[a["image_id"] == "a000", "label"] == "P1").all()  # mel → priority 1
    b = ds.table[ds.table["source"] == "b"]
    assert (b.loc[b["image_id"] == "b003", "label"] == "P1").all()  # SCC → priority 1


def test_different_taxonomies_need_a_common_one(two_sources: tuple[Path, Path], tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"data\.options\.taxonomy"):
        load_dataset(_merged_cfg(*two_sources, tmp_path))
    ds = load_dataset(_merged_cfg(*two_sources, tmp_path, taxonomy="ham7"))  # isic8 → ham7 exists (AK/SCC→akiec)
    assert ds.taxonomy.name == "ham7" and "akiec" in set(ds.table["label"])


def test_duplicates_and_prefixed_ids(two_sources: tuple[Path, Path], tmp_path: Path) -> None:
    a, _ = two_sources
    one = load_dataset(DataConfig(dataset="csv", csv=str(a)))
    merged = merge_datasets([one, one], ["x", "y"])
    assert len(merged) == 60 and set(merged.table["source"]) == {"x"}  # keep-first
    with pytest.raises(DatasetError, match="60 image ids occur in more than one source"):
        merge_datasets([one, one], ["x", "y"], duplicates="error")
    both = merge_datasets([one, one], ["x", "y"], prefix=[False, True])
    assert len(both) == 120 and both.table["image_id"].str.startswith("y:").sum() == 60
    assert both.table["lesion_id"].str.startswith("y:").sum() == 60
    with pytest.raises(ConfigError, match="unique"):
        merge_datasets([one, one], ["x", "x"])


def test_split_is_lesion_disjoint_across_sources(two_sources: tuple[Path, Path], tmp_path: Path) -> None:
    data = prepare_data(_merged_cfg(*two_sources, tmp_path, taxonomy="triage"), progress=False)
    table = data.table
    check_no_leakage(table, table["split"])
    shared = table[table["lesion_id"].str.startswith("shared")]
    assert set(shared["source"]) == {"clinic-a", "b"}
    assert (shared.groupby("lesion_id")["split"].nunique() == 1).all()  # one lesion, two sources, one split
    assert set(table["split"]) == {"train", "val", "test"}


@pytest.mark.parametrize(("options", "match"), [
    ({}, "needs data.options.sources"),
    ({"sources": [{"dataset": "csv"}], "bogus": 1}, "unknown data.options"),
    ({"sources": [{"dataset": "csv", "csv": "x.csv"}, {"datasett": "csv"}]}, r"data.options.sources\[1\]"),
    ({"sources": [{"dataset": "merged"}, {"dataset": "csv"}]}, "may not itself be 'merged'"),
    ({"sources": ["ham10000"]}, "must be a mapping"),
])
def test_bad_options_name_the_key(options: dict, match: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=match):
        load_dataset(DataConfig(dataset="merged", root=str(tmp_path), options=options))


def test_source_check_warns_when_sources_differ(two_sources: tuple[Path, Path], tmp_path: Path) -> None:
    data = prepare_data(_merged_cfg(*two_sources, tmp_path, taxonomy="triage"), progress=False, with_split=False)
    result = source_shortcut_check(data, folds=3)
    assert result.warning and result.balanced_accuracy > 0.9 and result.chance == 0.5
    assert result.sources == {"clinic-a": 60, "b": 60}
    assert "WARNING" in result.message
    colour = source_shortcut_check(data, features="colour-stats", folds=3)
    assert colour.warning


def test_source_check_quiet_when_sources_look_alike(tmp_path: Path) -> None:
    a = _write_source(tmp_path / "a", "a", HAM_LABELS, 60, None, 0)
    b = _write_source(tmp_path / "b", "b", HAM_LABELS, 60, None, 1)
    data = prepare_data(_merged_cfg(a, b, tmp_path), progress=False, with_split=False)
    result = source_shortcut_check(data, folds=3)
    assert not result.warning and result.balanced_accuracy < 0.65
    assert result.label_only_balanced_accuracy == pytest.approx(0.5, abs=0.1)  # same class mix


def test_source_check_cli(two_sources: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = two_sources
    cfg = tmp_path / "merged.yaml"
    cfg.write_text(f"data:\n  dataset: merged\n  image_size: 16\n  cache_dir: {tmp_path / 'c'}\n  options:\n"
                   f"    taxonomy: triage\n    sources:\n      - {{dataset: csv, csv: {a}}}\n"
                   f"      - {{dataset: csv, csv: {b}, name: other}}\n")
    out = tmp_path / "check.json"
    assert main(["-q", "source-check", "--config", str(cfg), "--folds", "3", "--json", str(out)]) == 0
    assert "WARNING" in capsys.readouterr().out and out.is_file()
    assert main(["-q", "source-check", "--config", str(cfg), "--margin", "2"]) == 2
    assert "--margin" in capsys.readouterr().err


def test_single_source_table_is_refused(two_sources: tuple[Path, Path], tmp_path: Path) -> None:
    data = prepare_data(DataConfig(dataset="csv", csv=str(two_sources[0]), image_size=16,
                                   cache_dir=str(tmp_path / "c")), progress=False, with_split=False)
    with pytest.raises(ValueError, match="at least two sources"):
        source_shortcut_check(data)


def test_real_merge_of_ham_originals_and_downsized(shared_data: Path) -> None:
    ham = shared_data / "ham10000"
    ds = load_dataset(DataConfig(dataset="merged", root=str(shared_data), options={"taxonomy": "triage", "sources": [
        {"dataset": "csv", "name": "originals", "csv": str(ham / "images_600x450_index.csv"),
         "image_dir": str(ham / "images_600x450"), "options": {"label_column": "dx"}},
        {"dataset": "ham10000", "name": "downsized"}]}))
    assert ds.table["source"].value_counts().to_dict() == {"downsized": 9780, "originals": 235}
    assert ds.table["image_id"].is_unique and len(ds) == 10_015
    assert ds.table["lesion_id"].nunique() == 7_470  # lesion ids shared across sources: one namespace
