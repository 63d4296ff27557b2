"""Library jobs as quiet as the command line: Lightning's start-up chatter (device banners, tips) off, known noise
from third-party code dropped, and every other warning shown once, on one line, without the source line that raised
it. ``-v`` on the command line (DEBUG on the ``lesionlab`` logger) shows everything."""

from __future__ import annotations

import functools
import logging
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

#: Loggers that print Lightning's GPU/TPU banners and tips at INFO.
LIGHTNING_LOGGERS = ("lightning.pytorch", "lightning.fabric", "lightning")
#: Warnings from third-party code that say nothing a LesionLab user can act on.
NOISE = (r".*LeafSpec.*", r".*does not have many workers.*", r".*smaller than the logging interval.*",
         r".*No positive samples in targets.*", r".*No negative samples in targets.*")


def _one_line(message: Warning | str, category: type[Warning], filename: str, lineno: int,
              line: str | None = None) -> str:
    return f"warning: {message} ({category.__name__})\n"


@contextmanager
def quiet_job() -> Iterator[None]:
    """Within the block: Lightning's INFO lines off, :data:`NOISE` ignored, each other warning once on one line."""
    if logging.getLogger("lesionlab").isEnabledFor(logging.DEBUG):
        yield
        return
    saved = {name: logging.getLogger(name).level for name in LIGHTNING_LOGGERS}
    formatter = warnings.formatwarning
    with warnings.catch_warnings():
        warnings.simplefilter("once")  # the same message from two call sites is shown once
        for pattern in NOISE:
            warnings.filterwarnings("ignore", message=pattern)
        warnings.formatwarning = _one_line  # the format only: a caller recording warnings still records them
        for name in LIGHTNING_LOGGERS:
            logging.getLogger(name).setLevel(max(logging.WARNING, saved[name]))
        try:
            yield
        finally:
            warnings.formatwarning = formatter
            for name, level in saved.items():
                logging.getLogger(name).setLevel(level)


def quiet(func: F) -> F:
    """Run ``func`` inside :func:`quiet_job`."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with quiet_job():
            return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
