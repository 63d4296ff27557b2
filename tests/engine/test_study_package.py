"""The studies ship with the package: ``study --list`` and ``study NAME`` work outside a checkout, and results go to a
folder the user chooses (the checkout's docs/results only when asked)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import lesionlab
from lesionlab.cli import main
from lesionlab.config.study import STUDY_DIR, load_study, study_names
from lesionlab.engine.study import run as study_module
from lesionlab.reports import study_page as study_report

PACKAGE = Path(lesionlab.__file__).resolve().parent


def test_studies_and_their_configs_lie_in_the_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no configs/ here
    assert STUDY_DIR.resolve().is_relative_to(PACKAGE.resolve()) or STUDY_DIR.is_relative_to(PACKAGE)
    assert {"focal-ablation", "dermamnist-resolution"} <= set(study_names())
    study = load_study("focal-ablation")
    configs = {Path(a.config) for a in study.arms if a.config}
    assert configs and all(p.is_absolute() and p.is_file() for p in configs)


def test_arm_config_in_the_working_directory_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "focal-ablation.yaml").write_text("name: mine\n")
    study = load_study("focal-ablation")
    assert {a.config for a in study.arms if a.config} == {"configs/focal-ablation.yaml"}


def test_study_list_outside_the_checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["study", "--list"]) == 0
    out = capsys.readouterr().out
    assert "focal-ablation" in out and "arms: full, no-focal" in out


@pytest.mark.parametrize(("extra", "expected"), [([], "runs/studies/results"), (["--runs-dir", "out"], "out/results"),
                                                 (["--results-dir", "docs/results"], "docs/results")])
def test_results_go_where_the_user_says(extra: list[str], expected: str, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    seen = {}

    def fake_run(study, **kwargs):
        seen.update(kwargs)
        return pd.DataFrame()

    monkeypatch.setattr(study_module, "run_study", fake_run)
    monkeypatch.setattr(study_report, "write_study_page", lambda *a, **k: None)
    assert main(["study", "focal-ablation", *extra]) == 0
    assert Path(seen["results_dir"]) == Path(expected)
