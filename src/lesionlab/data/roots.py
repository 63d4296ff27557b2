"""Where data and caches live: explicit argument > environment variable > the user's cache directory."""

from __future__ import annotations

import os
from pathlib import Path

from platformdirs import user_cache_dir

DATA_ENV = "LESIONLAB_DATA"
CACHE_ENV = "LESIONLAB_CACHE"


def resolve_data_root(explicit: str | Path | None = None) -> Path:
    """``--data-root`` > ``$LESIONLAB_DATA`` > ``<user cache>/lesionlab/data``. Nothing is created here."""
    if explicit:
        return Path(explicit).expanduser()
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV]).expanduser()
    return Path(user_cache_dir("lesionlab")) / "data"


def resolve_cache_dir(explicit: str | Path | None = None) -> Path:
    """Preprocessed-array cache: explicit > ``$LESIONLAB_CACHE`` > ``<user cache>/lesionlab/arrays``."""
    if explicit:
        return Path(explicit).expanduser()
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return Path(user_cache_dir("lesionlab")) / "arrays"
