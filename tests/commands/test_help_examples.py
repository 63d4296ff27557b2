"""Every evaluation command explains itself with --help."""

from __future__ import annotations

import pytest

from lesionlab.cli import main


@pytest.mark.parametrize("command", ["cv", "compare", "calibrate", "explain", "robustness", "leakage-audit",
                                     "transfer-report"])
def test_every_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    assert len(capsys.readouterr().out) > 300


#: Every command that builds a config: one grammar, ``--config FILE key=value ...``.
CONFIG_COMMANDS = (["train"], ["cv"], ["sweep"], ["ablate"], ["augment-preview"], ["leakage-audit"],
                   ["source-check"], ["pretrain", "vae"], ["compare-pretraining"], ["distill"])


@pytest.mark.parametrize("command", CONFIG_COMMANDS, ids=" ".join)
def test_config_commands_share_one_grammar(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main([*command, "--help"])
    out = capsys.readouterr().out
    assert "--config FILE" in out and "key=value" in out
    assert "--set" not in out


@pytest.mark.parametrize(("command", "says"), [
    (["robustness"], "default: the run's eval.tta"),
    (["explain"], "default: the run's eval.gradcam_method"),
    (["calibrate"], "default: the run's eval.triage_sensitivity"),
    (["ood", "fit"], "default: the run's eval.ood"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_post_hoc_commands_default_to_the_runs_settings(command: list[str], says: str,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main([*command, "--help"])
    assert says in " ".join(capsys.readouterr().out.split())  # argparse wraps lines
