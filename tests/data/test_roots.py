"""Runs store absolute data roots; post-hoc commands resolve ``--data-root`` > ``$LESIONLAB_DATA`` > the stored root
from any directory, and a not-found message names all three."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
import yaml

from lesionlab.cli import main
from lesionlab.data.roots import DATA_ENV, ROOT_SOURCES, data_root_hint, resolve_run_data_root


@pytest.fixture(scope="module")
def relative_root_run(shared_data: Path, ham_metadata: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory,
                      tiny_run) -> tuple[Path, Path]:
    """A tiny HAM10000 run trained with ``--data-root data`` (relative) from ``work/``; returns (run, data root)."""
    work = tmp_path_factory.mktemp("work")
    folder = work / "data" / "ham10000"
    folder.mkdir(parents=True)
    lesions = ham_metadata.groupby("dx")["lesion_id"].apply(lambda s: list(dict.fromkeys(s))[:12]).explode()
    ham_metadata[ham_metadata["lesion_id"].isin(set(lesions))].to_csv(folder / "HAM10000_metadata.csv", index=False)
    os.symlink(shared_data / "ham10000" / "images_200x150", folder / "images")
    cwd, env = Path.cwd(), os.environ.pop(DATA_ENV, None)
    os.chdir(work)
    try:
        run = tiny_run(f"data.cache_dir={work / 'cache'}", name="rel", out=work / "runs", data_root="data")
    finally:
        os.chdir(cwd)
        if env is not None:
            os.environ[DATA_ENV] = env
    return run, work / "data"


def test_run_stores_the_absolute_root(relative_root_run: tuple[Path, Path]) -> None:
    run, root = relative_root_run
    data = yaml.safe_load((run / "config.yaml").read_text())["data"]
    assert data["root"] == str(root) and Path(data["cache_dir"]).is_absolute()


def test_post_hoc_commands_work_from_another_directory_and_follow_the_order(
        relative_root_run: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    run, root = relative_root_run
    monkeypatch.delenv(DATA_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    robustness = ["-q", "robustness", str(run), "--corruptions", "gaussian_noise", "--severities", "1"]
    assert main(robustness) == 0  # the stored absolute root
    assert main(["-q", "evaluate", str(run), "--exclude-seen"]) == 0
    assert list(tmp_path.iterdir()) == []  # reports go under the run, never into the current directory
    assert len(list((run / "robustness").iterdir())) == 1 and len(list((run / "evaluations").iterdir())) == 1
    moved = root.with_name("moved")
    root.rename(moved)
    try:
        capsys.readouterr()
        assert main(robustness) == 2
        err = capsys.readouterr().err
        assert "HAM10000 metadata not found" in err and "Download" not in err
        assert "came from the run's stored root" in err and str(root) in err
        assert "--data-root (not given)" in err and f"${DATA_ENV} (not set)" in err
        monkeypatch.setenv(DATA_ENV, str(moved))
        assert main(robustness) == 0  # the environment variable beats the stored root
        assert main([*robustness, "--data-root", str(tmp_path / "nowhere")]) == 2  # --data-root beats both
        err = capsys.readouterr().err
        assert f"{tmp_path / 'nowhere'} came from --data-root" in err
        assert f"${DATA_ENV} ({moved})" in err
    finally:
        moved.rename(root)


def test_root_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(DATA_ENV, raising=False)
    assert resolve_run_data_root(None, "/stored") == (Path("/stored"), ROOT_SOURCES[2])
    assert resolve_run_data_root("rel", "/stored") == (tmp_path / "rel", ROOT_SOURCES[0])
    monkeypatch.setenv(DATA_ENV, "/env")
    assert resolve_run_data_root(None, "/stored") == (Path("/env"), ROOT_SOURCES[1])
    assert resolve_run_data_root("/flag", "/stored")[0] == Path("/flag")
    assert "--data-root (not given) > $LESIONLAB_DATA (/env) > the run's stored root (/stored)" in data_root_hint(
        None, "/stored")


def test_data_info_without_data_says_how_to_point_at_existing_files(tmp_path: Path, capsys) -> None:
    assert main(["data", "info", "ham10000", "--data-root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "Download" in err and "--data-root DIR" in err and DATA_ENV in err


def test_compare_writes_beside_the_runs_not_into_the_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runs = tmp_path / "runs"
    for name, bal in (("a", 0.5), ("b", 0.6)):
        (runs / name).mkdir(parents=True)
        (runs / name / "metrics.json").write_text(f'{{"balanced_accuracy": {bal}, "n": 10}}')
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    assert main(["-q", "compare", str(runs / "a"), str(runs / "b")]) == 0
    assert list(cwd.iterdir()) == []
    assert len(list(runs.glob("compare-*/report.html"))) == 1
    assert main(["-q", "compare", str(runs / "a"), "--output-dir", str(tmp_path / "reports")]) == 0
    assert list((tmp_path / "reports").glob("compare-*/compare.csv"))


def test_absolute_data_config_covers_every_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lesionlab.config import DataConfig
    from lesionlab.data.roots import absolute_data_config

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(DATA_ENV, "env-data")
    cfg = absolute_data_config(DataConfig(dataset="merged", csv="t.csv", image_dir="~/img", options={
        "sources": [{"dataset": "ham10000"}, {"dataset": "csv", "csv": "../x.csv", "root": "r"}]}))
    assert cfg.root == str(tmp_path / "env-data") and cfg.csv == str(tmp_path / "t.csv")
    assert cfg.image_dir == str(Path.home() / "img") and cfg.cache_dir is None
    second = {"dataset": "csv", "csv": str(tmp_path.parent / "x.csv"), "root": str(tmp_path / "r")}
    assert cfg.options["sources"] == [{"dataset": "ham10000"}, second]
