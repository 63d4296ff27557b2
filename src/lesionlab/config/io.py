"""YAML / ``key=value`` ↔ typed config dataclasses: defaults ← file ← overrides, checked field by field."""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar, Union, overload

import yaml

from lesionlab.config.base import ConfigError, _check
from lesionlab.config.experiment import ExperimentConfig

T = TypeVar("T")


def _strip_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _coerce(value: Any, tp: Any, where: str) -> Any:
    tp, optional = _strip_optional(tp)
    if value is None:
        _check(optional, f"{where} may not be null")
        return None
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        _check(isinstance(value, dict), f"{where} must be a mapping")
        return from_dict(tp, value, where)
    origin = typing.get_origin(tp)
    if origin is tuple:
        items = value if isinstance(value, list | tuple) else [value]
        (inner, *_rest) = typing.get_args(tp)
        return tuple(_coerce(v, inner, where) for v in items)
    if origin is dict or tp is dict:
        _check(isinstance(value, dict), f"{where} must be a mapping")
        return dict(value)
    if tp is bool:
        _check(isinstance(value, bool), f"{where} must be true or false, got {value!r}")
        return value
    if tp is int:
        _check(isinstance(value, int) and not isinstance(value, bool), f"{where} must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):  # PyYAML (YAML 1.1) reads exponents without a dot, like 1e-3, as strings
            try:
                value = float(value)
            except ValueError:
                raise ConfigError(f"{where} must be a number, got {value!r}") from None
        _check(isinstance(value, int | float) and not isinstance(value, bool),
               f"{where} must be a number, got {value!r}")
        return float(value)
    if tp is str and isinstance(value, list):  # "0,1" was split by parse_override; a string field wants it whole
        value = ",".join(str(v) for v in value)
    if tp is str:
        _check(isinstance(value, str | int | float) and not isinstance(value, bool), f"{where} must be a string")
        return str(value)
    return value


def from_dict(cls: type[T], data: dict[str, Any], where: str = "") -> T:
    """Build a dataclass from a (possibly partial) mapping; unknown keys are errors that list the valid ones."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = set(data) - names
    if unknown:
        raise ConfigError(f"Unknown config key(s) {sorted(unknown)} in {where or cls.__name__}; "
                          f"{_did_you_mean(sorted(unknown), names, where)}valid: {sorted(names)}")
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}".lstrip(".")) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as exc:  # pragma: no cover - dataclass signature errors
        raise ConfigError(str(exc)) from exc


def _did_you_mean(unknown: list[str], names: set[str], where: str) -> str:
    """``did you mean train.epochs? `` for the unknown keys that are close to a valid one."""
    prefix = f"{where}." if where else ""
    close = [f"{prefix}{match[0]}" for key in unknown if (match := difflib.get_close_matches(key, names, n=1))]
    return f"did you mean {', '.join(close)}? " if close else ""


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain-YAML-friendly dict (tuples become lists)."""

    def clean(v: Any) -> Any:
        if isinstance(v, tuple | list):
            return [clean(x) for x in v]
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        return v

    return clean(dataclasses.asdict(cfg))


def parse_override(text: str) -> tuple[list[str], Any]:
    """``train.optimizer.lr=1e-3`` → (["train", "optimizer", "lr"], 0.001). Values are parsed as YAML scalars/lists."""
    if "=" not in text:
        raise ConfigError(f"Override {text!r} must look like key=value (e.g. train.epochs=5)")
    key, raw = text.split("=", 1)
    _check(bool(key.strip()), f"Override {text!r} has an empty key")
    value = yaml.safe_load(raw) if raw.strip() else None
    if isinstance(value, str) and "," in value and not raw.strip().startswith(("'", '"')):
        value = [yaml.safe_load(v) for v in value.split(",")]
    return key.strip().split("."), value


def _set_path(data: dict[str, Any], path: list[str], value: Any) -> None:
    node = data
    for part in path[:-1]:
        node = node.setdefault(part, {})
        _check(isinstance(node, dict), f"Cannot set {'.'.join(path)}: {part} is not a section")
    node[path[-1]] = value


def _read_yaml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"Config file not found: {p}")
    loaded = yaml.safe_load(p.read_text()) or {}
    _check(isinstance(loaded, dict), f"{p} must contain a YAML mapping at the top level")
    return loaded


def load_typed_config(cls: type[T], path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> T:
    """Like :func:`load_config` for any config dataclass (``PretrainConfig``, ``DistillConfig``, ...)."""
    return _build(cls, _read_yaml(path) if path is not None else {}, overrides)


def _build(cls: type[T], data: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> T:
    for text in overrides:
        keys, value = parse_override(text)
        _set_path(data, keys, value)
    return from_dict(cls, data)


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> ExperimentConfig:
    """Defaults ← YAML file ← ``key=value`` overrides, validated."""
    return load_typed_config(ExperimentConfig, path, overrides)


@overload
def load_run_config(path: str | Path, *, overrides: list[str] | tuple[str, ...] = ()) -> ExperimentConfig: ...


@overload
def load_run_config(path: str | Path, cls: type[T], overrides: list[str] | tuple[str, ...] = ()) -> T: ...


def load_run_config(path: str | Path, cls: type[Any] = ExperimentConfig,
                    overrides: list[str] | tuple[str, ...] = ()) -> Any:
    """The ``config.yaml`` of a saved run (← ``overrides``)."""
    return _build(cls, _read_yaml(path), overrides)


def read_run_config(path: str | Path) -> dict[str, Any]:
    """A saved run's ``config.yaml`` as a plain mapping."""
    return _read_yaml(path)


def save_config(cfg: Any, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
