"""The config error and the validation helper every config dataclass uses."""

from __future__ import annotations

from lesionlab.errors import LesionLabError


class ConfigError(LesionLabError, ValueError):
    """A configuration value is missing, unknown or out of range; the message says what to do."""


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)
