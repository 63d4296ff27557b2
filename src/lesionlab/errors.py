"""The one base of the errors that mean "the user's input is wrong".

Every such error derives from :class:`LesionLabError` (and keeps its built-in base, e.g. ``ValueError``, so callers
that caught those still do). The CLI prints them as one line and exits with status 2. This module imports nothing,
so any layer may raise these errors.
"""

from __future__ import annotations


class LesionLabError(Exception):
    """A problem with the user's input (config, data, files, model): the message says what is wrong and what to do."""


class EvaluationInputError(LesionLabError, ValueError):
    """Predictions, labels or runs handed to an evaluation do not fit together."""


#: What the CLI reports as one line with exit status 2 (``FileNotFoundError``: a path the user gave is missing).
USER_ERRORS: tuple[type[BaseException], ...] = (LesionLabError, FileNotFoundError)
