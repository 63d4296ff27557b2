"""Library jobs are as quiet as the command line: Lightning's INFO chatter off, each warning once on one line."""

from __future__ import annotations

import logging
import subprocess
import sys
import warnings

from lesionlab.engine.core.quiet import quiet, quiet_job
from lesionlab.evaluation.metrics import MetricWarning


def _warn_twice() -> None:
    warnings.warn("class 'df' is absent from the truth", MetricWarning, stacklevel=1)
    warnings.warn("class 'df' is absent from the truth", MetricWarning, stacklevel=1)  # another call site


def test_each_warning_once_on_one_line() -> None:
    """In a fresh interpreter (pytest records warnings itself): what a user of the Python API sees on stderr."""
    code = """
import warnings
from lesionlab.engine.core.quiet import quiet_job
from lesionlab.evaluation.metrics import MetricWarning

with quiet_job():
    warnings.warn("class 'df' is absent from the truth", MetricWarning)
    warnings.warn("class 'df' is absent from the truth", MetricWarning)  # another call site
    warnings.warn("Consider increasing `num_workers`: does not have many workers", UserWarning)
print(warnings.formatwarning.__module__)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stderr == "warning: class 'df' is absent from the truth (MetricWarning)\n"
    assert out.stdout == "warnings\n"  # the format is restored afterwards


def test_a_caller_recording_warnings_still_records_them() -> None:
    with warnings.catch_warnings(record=True) as caught, quiet_job():
        _warn_twice()
    assert [str(w.message) for w in caught] == ["class 'df' is absent from the truth"]


def test_lightning_info_off_inside_and_restored_after() -> None:
    logger = logging.getLogger("lightning.pytorch")
    logger.setLevel(logging.INFO)  # what Lightning sets at import
    try:
        seen = []
        quiet(lambda: seen.append(logger.getEffectiveLevel()))()
        assert seen == [logging.WARNING]
        assert logger.level == logging.INFO
    finally:
        logger.setLevel(logging.NOTSET)


def test_debug_logging_shows_everything() -> None:
    lesionlab, lightning = logging.getLogger("lesionlab"), logging.getLogger("lightning.pytorch")
    old = lesionlab.level
    lesionlab.setLevel(logging.DEBUG)
    lightning.setLevel(logging.INFO)
    try:
        shown = warnings.formatwarning
        with quiet_job():
            assert warnings.formatwarning is shown and lightning.level == logging.INFO
    finally:
        lesionlab.setLevel(old)
        lightning.setLevel(logging.NOTSET)
