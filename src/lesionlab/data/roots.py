"""Where data and caches live: explicit argument > environment variable > the user's cache directory."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from platformdirs import user_cache_dir

from lesionlab.config import DataConfig

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


#: Where a post-hoc command's data root came from, in the order they are tried.
ROOT_SOURCES = ("--data-root", f"${DATA_ENV}", "the run's stored root")


def resolve_run_data_root(explicit: str | Path | None, stored: str | Path | None) -> tuple[Path, str]:
    """A post-hoc command's data root: ``--data-root`` > ``$LESIONLAB_DATA`` > the root stored in the run's config
    (absolute since runs store it so; older runs' relative roots count from the current directory).

    Returns the root and which of :data:`ROOT_SOURCES` chose it (the user cache when none is set).
    """
    if explicit:
        return Path(absolute_path(explicit)), ROOT_SOURCES[0]
    if os.environ.get(DATA_ENV):
        return Path(absolute_path(os.environ[DATA_ENV])), ROOT_SOURCES[1]
    if stored:
        return Path(absolute_path(stored)), ROOT_SOURCES[2]
    return resolve_data_root(None), "the user cache directory"


def data_root_hint(explicit: str | Path | None, stored: str | Path | None) -> str:
    """What a not-found message says about the data root: all three places, which one was used, what to do."""
    root, source = resolve_run_data_root(explicit, stored)
    env = os.environ.get(DATA_ENV)
    return (f"Data root {root} came from {source}. The data root is --data-root "
            f"({explicit or 'not given'}) > ${DATA_ENV} ({env or 'not set'}) > the run's stored root "
            f"({stored or 'none'}): pass --data-root DIR or set {DATA_ENV}=DIR to the folder that holds the data now.")


def absolute_path(path: str | Path | None) -> str | None:
    """``path`` made absolute (and normalised) against the current directory, ``~`` expanded; None stays None."""
    return None if not path else os.path.abspath(os.path.expanduser(str(path)))


def absolute_data_config(cfg: DataConfig) -> DataConfig:
    """``cfg`` with its root resolved (``$LESIONLAB_DATA`` / the user cache when unset) and every path absolute: what
    a run directory stores, so post-hoc commands work from any directory."""
    options = dict(cfg.options)
    if isinstance(options.get("sources"), list | tuple):  # data.dataset=merged: each source's own paths too
        options["sources"] = [{**s, **{k: absolute_path(s[k]) for k in PATH_KEYS if s.get(k)}} if isinstance(s, dict)
                              else s for s in options["sources"]]
    return replace(cfg, root=absolute_path(resolve_data_root(cfg.root)), image_dir=absolute_path(cfg.image_dir),
                   csv=absolute_path(cfg.csv), cache_dir=absolute_path(cfg.cache_dir), options=options)


#: Path fields of a data (or merged-source) config.
PATH_KEYS = ("root", "image_dir", "csv")
