"""User-input errors of the evaluation tools (the CLI prints them as one line and exits 2)."""

from __future__ import annotations


class EvaluationInputError(ValueError):
    """A run, ensemble or option handed to an evaluation tool cannot be used; the message says why and what to do."""
