"""Argument helpers shared by the command modules: the one config grammar (``--config FILE key=value ...``), the
shared flags (``--data-root``, ``--output-dir``, ``--out``: each declared here once), data arguments, image lists,
model arguments, quiet Lightning.

Two output flags with two meanings, as in the library (``output_dir=`` vs ``out_dir=``):

- ``--output-dir DIR``: the parent folder in which the command makes its new, named folder (a run, a sweep, an
  ensemble, a report), like ``output_dir`` in the configs;
- ``--out PATH``: exactly where the command writes: the file, or the folder it fills.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar, overload

from lesionlab.config import ConfigError, DataConfig, EvalConfig, ExperimentConfig, load_typed_config

T = TypeVar("T")

class HelpFormatter(argparse.HelpFormatter):
    """Wraps each paragraph of a description or epilog to the terminal, but keeps a paragraph that has line breaks
    (an example, a table) as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        parts = []
        for part in text.split("\n\n"):
            if "\n" in part.strip("\n"):
                parts.append("".join(indent + line for line in part.splitlines(keepends=True)))
            else:
                parts.append(super()._fill_text(part, width, indent))
        return "\n\n".join(parts)


class DefaultsHelpFormatter(HelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """:class:`HelpFormatter` that also prints each option's default."""


class Parser(argparse.ArgumentParser):
    """The parser of ``lesionlab`` and of every command under it (sub-parsers take their parent's class):
    :class:`HelpFormatter` unless a command asks for another."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(**kwargs)


#: Appended to the help of every config-taking command.
OVERRIDES_HELP = ("config overrides as key=value (e.g. train.epochs=5 train.optimizer.lr=1e-3); give them together, "
                  "before or after the --options")


def add_config_args(p: argparse.ArgumentParser, config_help: str = "YAML experiment file (see configs/)",
                    overrides_example: str = "train.epochs=5 data.image_size=48") -> None:
    """``--config FILE`` and positional ``key=value`` overrides: the grammar of every command that takes a config."""
    p.add_argument("--config", default=None, metavar="FILE", help=f"{config_help}; default: the built-in defaults")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help=f"config overrides, e.g. {overrides_example} (after --config, before or after the options)")


DATA_ROOT_HELP = "data root (default: $LESIONLAB_DATA, then the user cache)"


def add_data_root(p: argparse.ArgumentParser, help: str = DATA_ROOT_HELP, required: bool = False) -> None:
    """``--data-root``: where the datasets live (its help says what it sets for this command)."""
    p.add_argument("--data-root", default=None, required=required, help=help)


def add_run_data_root(p: argparse.ArgumentParser) -> None:
    """``--data-root`` of a command on a finished run: where its data lives now (the run stores its own root)."""
    add_data_root(p, "where the run's data lives now (default: as trained)")


def add_output_dir(p: argparse.ArgumentParser, help: str = "shortcut for output_dir=...") -> None:
    """``--output-dir DIR``: the parent folder of the new folder the command makes (like ``output_dir=``)."""
    p.add_argument("--output-dir", default=None, help=help)


def add_out(p: argparse.ArgumentParser, help: str, required: bool = False) -> None:
    """``--out PATH``: exactly where the command writes (a file, or the folder it fills), never a parent."""
    p.add_argument("--out", default=None, required=required, help=help)


def add_config_shortcuts(p: argparse.ArgumentParser, data_key: str = "data.root", output_dir: bool = True) -> None:
    """``--data-root`` (a shortcut for ``data_key=...``) and, unless ``output_dir`` is false, ``--output-dir`` (for
    ``output_dir=...``): the shortcut options of a config-taking command; read by :func:`experiment_overrides`."""
    add_data_root(p, f"shortcut for {data_key}=...")
    if output_dir:
        add_output_dir(p)


def experiment_overrides(args: argparse.Namespace, data_key: str = "data.root", output_dir: bool = True,
                         **more: str) -> list[str]:
    """The overrides followed by those of the shortcut options (:func:`add_config_shortcuts`; ``more`` maps further
    option names to keys, e.g. ``vae_run="vae_run"``)."""
    keys = {"data_root": data_key, **({"output_dir": "output_dir"} if output_dir else {}), **more}
    return config_overrides(args, *shortcut_overrides(args, **keys))


def config_overrides(args: argparse.Namespace, *extra: str) -> list[str]:
    """The command's ``key=value`` overrides followed by ``extra`` (from shortcut options); a config file given as
    an override is refused with the right spelling."""
    for item in args.overrides:
        if "=" not in item and Path(item).suffix in (".yaml", ".yml"):
            raise ConfigError(f"{item} is not a key=value override: give the config file as --config {item}")
    return [*args.overrides, *extra]


@overload
def load_experiment(config: str | Path | None, overrides: Sequence[str] = ()) -> ExperimentConfig: ...
@overload
def load_experiment(config: str | Path | None, overrides: Sequence[str], cls: type[T]) -> T: ...
def load_experiment(config: str | Path | None, overrides: Sequence[str] = (), cls: type = ExperimentConfig) -> Any:
    """Defaults ← ``config`` ← ``overrides``, every registered name checked and the backbone weights found (before
    any data is read or any directory is made); the one way a command builds its config."""
    from lesionlab.training.validation import check_component_names, check_eval_names, check_weights

    cfg: Any = load_typed_config(cls, config, list(overrides))
    eval_cfg = getattr(cfg, "eval", None)
    if isinstance(eval_cfg, EvalConfig):
        check_eval_names(eval_cfg)  # needs no PyTorch
    check_weights(cfg)  # needs timm only; the full names check imports the training stack's registries
    check_component_names(cfg)
    return cfg


def shortcut_overrides(args: argparse.Namespace, **keys: str) -> list[str]:
    """``key=value`` for each shortcut option that was given, e.g. ``data_root="data.root"``."""
    out: list[str] = []
    for attr, key in keys.items():
        value: Any = getattr(args, attr, None)
        if value not in (None, False):
            out.append(f"{key}={'true' if value is True else value}")
    return out

#: What the ``[train]`` extra installs that training commands import.
TRAINING_PACKAGES = ("lightning", "torchmetrics", "imblearn", "schedulefree")


def add_data_args(p: argparse.ArgumentParser, dataset_required: bool = False) -> None:
    """``--dataset`` and the options that describe where and how it is read (:func:`data_config_from_args`)."""
    p.add_argument("--dataset", required=dataset_required, default=None if dataset_required else "ham10000",
                   help="dataset name (ham10000, isic2018, isic2019, isic2020, ph2, pad_ufes_20, derm7pt, onehot-csv, "
                   "csv, folder, dermamnist)")
    add_dataset_options(p)


def add_dataset_options(p: argparse.ArgumentParser) -> None:
    """Where and how a dataset is read: root, image folder, table, taxonomy, loader options, unreadable images."""
    add_data_root(p)
    p.add_argument("--image-dir", default=None, help="image folder (overrides the dataset's default layout)")
    p.add_argument("--csv", default=None, help="table for the csv / onehot-csv datasets")
    p.add_argument("--taxonomy", default=None, help="express labels in this taxonomy (ham7, isic8, triage)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="dataset-specific option, e.g. isic_ground_truth=PATH (repeatable)")
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable/missing images (listed) instead of failing")


def data_config_from_args(args: argparse.Namespace, **extra: Any) -> DataConfig:
    options = {}
    for text in args.option:
        if "=" not in text:
            raise ConfigError(f"--option {text!r} must look like KEY=VALUE")
        k, v = text.split("=", 1)
        options[k] = v
    return DataConfig(dataset=args.dataset, root=args.data_root, image_dir=args.image_dir, csv=args.csv,
                      taxonomy=args.taxonomy, options=options, skip_bad=args.skip_bad, **extra)


def expand_images(items: Sequence[str]) -> list[Path]:
    """Image files and the image files of folders (see :func:`collect_images` for what is skipped)."""
    return collect_images(items)[0]


def collect_images(items: Sequence[str]) -> tuple[list[Path], list[Path]]:
    """``(images, skipped)``: the given files, and each folder's image files; ``skipped`` holds a folder's other
    files (e.g. ``notes.txt``), so the caller can report them. A path that does not exist raises at once,
    before any model loads."""
    from lesionlab.data.table import IMAGE_EXTENSIONS

    missing = [item for item in items if not Path(item).exists()]
    if missing:
        raise FileNotFoundError(f"no such file or folder: {', '.join(missing)}")
    paths: list[Path] = []
    skipped: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            for q in sorted(q for q in p.iterdir() if q.is_file() and not q.name.startswith(".")):
                (paths if q.suffix.lower() in IMAGE_EXTENSIONS else skipped).append(q)
        else:
            paths.append(p)
    return paths, skipped


def looks_like_model(arg: str) -> bool:
    from lesionlab.builtin.registry import is_builtin_ref

    path = Path(arg)
    if path.is_dir():
        return any((path / f).is_file() for f in ("model.pt", "model.onnx", "ensemble.json"))
    return path.suffix in (".pt", ".onnx", ".json", ".yaml", ".yml") or (not path.exists() and is_builtin_ref(arg))


def meant_as_model(arg: str) -> bool:
    """A leading argument that names a model, or names nothing that exists and is no image file: read as the model
    so that a mistyped model is an error, never a silent switch to the built-in model."""
    from lesionlab.data.table import IMAGE_EXTENSIONS

    return looks_like_model(arg) or (not Path(arg).exists() and Path(arg).suffix.lower() not in IMAGE_EXTENSIONS)


def split_model_argument(model: str | None, args: Sequence[str]) -> tuple[str | None, list[str]]:
    """``(model, images)``: ``--model``, else a leading model argument, else None (the built-in model).

    A model that was given is resolved here, before anything heavy loads: one that does not exist raises an error
    naming what was tried (:func:`lesionlab.builtin.registry.resolve_model_ref`)."""
    from lesionlab.builtin.registry import resolve_model_ref

    args = list(args)
    if model is None and len(args) > 1 and meant_as_model(args[0]):
        model, args = args[0], args[1:]
    elif model is None and len(args) == 1 and looks_like_model(args[0]):
        raise ConfigError(f"{args[0]} is a model: give the images to predict after it")
    if model is not None:
        resolve_model_ref(model)
    return model, args


def checks_model(attr: str = "run") -> Callable[[Callable[[argparse.Namespace], int]],
                                                Callable[[argparse.Namespace], int]]:
    """Decorate a command so that its model argument ``args.<attr>`` is resolved first: a mistyped run fails in a
    fraction of a second, naming what was tried, before the command imports its stack or loads anything."""

    def decorate(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        @functools.wraps(func)
        def command(args: argparse.Namespace) -> int:
            from lesionlab.builtin.registry import resolve_model_ref

            resolve_model_ref(getattr(args, attr))
            return func(args)

        return command

    return decorate


def prepare_training(verbose: bool) -> None:
    """Before a command that trains: check the ``[train]`` extra is installed, and keep Lightning's INFO lines
    (tips, device banners; it installs its own handler at import) out of the output unless ``--verbose``."""
    missing = [name for name in TRAINING_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise ConfigError(f"this command trains models and needs {', '.join(missing)}: pip install 'lesionlab[train]' "
                          "(prediction, evaluation and serving work without it)")
    if verbose:
        return
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        lg = logging.getLogger(name)
        lg.setLevel(logging.WARNING)
        lg.propagate = False
