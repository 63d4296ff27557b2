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
