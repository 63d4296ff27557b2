"""The configuration reference (``docs/config-reference.md``), generated from the config dataclasses.

Walks :class:`lesionlab.config.ExperimentConfig` recursively: one table per section (nested dataclasses and tuples
of dataclasses such as ``train.stages[]`` get their own), with each key's dotted path, type, default and the
trailing ``# comment`` of its line in the source (or the comment lines just above it). The class docstring
introduces the section. Regenerate with ``python -m lesionlab.config_reference``.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import io
import sys
import textwrap
import tokenize
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union

from lesionlab.config import ExperimentConfig

#: Where the generated reference lives, relative to the repository root.
DEFAULT_OUTPUT = Path("docs/config-reference.md")
REGENERATE = "python -m lesionlab.config_reference"

_MISSING = object()


@dataclass(frozen=True)
class Key:
    """One leaf setting: its dotted path (``train.stages[].lr``), type, default and description."""

    path: str
    type: str
    default: str
    description: str


@dataclass(frozen=True)
class Section:
    """The keys one config dataclass holds directly, under ``path`` (empty for the top level)."""

    path: str
    cls: type
    intro: str
    keys: tuple[Key, ...]


# --------------------------------------------------------------------------------------------------------------
# source comments


def field_comments(cls: type) -> dict[str, str]:
    """``{field: comment}`` from the class source: the trailing ``# comment`` of the field's line(s), else the
    comment lines directly above it. Fields without either are absent."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):  # no source (built in a REPL, frozen app)
        return {}
    comments: dict[int, str] = {}
    code_lines: set[int] = set()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string.lstrip("#").strip()
        elif tok.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER):
            code_lines.update(range(tok.start[0], tok.end[0] + 1))
    class_def = ast.parse(source).body[0]
    out: dict[str, str] = {}
    for node in getattr(class_def, "body", []):
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        end = node.end_lineno or node.lineno
        trailing = [comments[n] for n in range(node.lineno, end + 1) if n in comments and n in code_lines]
        if trailing:
            out[node.target.id] = " ".join(trailing)
            continue
        above: list[str] = []
        line = node.lineno - 1
        while line in comments and line not in code_lines:
            above.insert(0, comments[line])
            line -= 1
        if above:
            out[node.target.id] = " ".join(above)
    return out


# --------------------------------------------------------------------------------------------------------------
# types and defaults


def _strip_optional(tp: Any) -> tuple[Any, bool]:
    if typing.get_origin(tp) in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(args) < len(typing.get_args(tp)):
            return args[0], True
    return tp, False


def _dataclass_items(tp: Any) -> type | None:
    """The dataclass of a ``tuple[X, ...]`` / ``list[X]`` of dataclasses, else None."""
    tp, _ = _strip_optional(tp)
    if typing.get_origin(tp) in (tuple, list):
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        if len(args) == 1 and isinstance(args[0], type) and dataclasses.is_dataclass(args[0]):
            return args[0]
    return None


def type_name(tp: Any) -> str:
    """A short, readable type: ``str | None``, ``tuple[float, ...]``, ``dict[str, Any]``, ``one of: a, b``."""
    if tp is type(None):
        return "None"
    if tp is Any:
        return "Any"
    if tp is Ellipsis:
        return "..."
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of: " + ", ".join(str(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        parts = [type_name(a) for a in args if a is not type(None)]
        if type(None) in args:
            parts.append("None")
        return " | ".join(parts)
    if origin is not None:
        name = getattr(origin, "__name__", str(origin))
        return f"{name}[{', '.join(type_name(a) for a in typing.get_args(tp))}]"
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _yaml_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"' if value == "" else value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _yaml_value(dataclasses.asdict(value))
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_yaml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_yaml_value(v)}" for k, v in value.items()) + "}"
    return repr(value)


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return _MISSING


def _cell(text: str, code: bool = False) -> str:
    """Table-cell text: pipes escaped; outside code spans ``<x>`` escaped so renderers do not take it for HTML."""
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if code else text.replace("<", "&lt;").replace(">", "&gt;")


# --------------------------------------------------------------------------------------------------------------
# walking the dataclasses


def _intro(cls: type) -> str:
    doc = cls.__doc__ or ""
    if doc.startswith(f"{cls.__name__}("):  # dataclass's generated signature: no docstring was written
        return ""
    return inspect.cleandoc(doc)


def iter_sections(cls: type = ExperimentConfig, path: str = "", note: str = "") -> Iterator[Section]:
    """Depth first: the section of ``cls`` under ``path``, then its nested sections in field order."""
    hints = typing.get_type_hints(cls)
    comments = field_comments(cls)
    keys: list[Key] = []
    nested: list[tuple[type, str, str]] = []
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        key = f"{path}.{f.name}" if path else f.name
        inner, optional = _strip_optional(tp)
        if isinstance(inner, type) and dataclasses.is_dataclass(inner):  # a section of its own, not a key
            sub_note = comments.get(f.name, "")
            if optional and _default(f) is None:
                sub_note = f"Optional section, `null` by default. {sub_note}".strip()
            nested.append((inner, key, sub_note))
            continue
        items = _dataclass_items(tp)
        if items is not None:
            nested.append((items, f"{key}[]", ""))
            type_text = f"list of `{key}[]` entries"
        else:
            type_text = type_name(tp)
        default = _default(f)
        keys.append(Key(key, type_text, "(required)" if default is _MISSING else _yaml_value(default),
                        comments.get(f.name, "")))
    intro = "\n\n".join(t for t in (_intro(cls), note) if t)
    yield Section(path, cls, intro, tuple(keys))
    for sub, sub_path, sub_note in nested:
        yield from iter_sections(sub, sub_path, sub_note)


def leaf_keys(cls: type = ExperimentConfig) -> list[str]:
    """Every key of the reference's tables, depth first."""
    return [k.path for s in iter_sections(cls) for k in s.keys]


def config_reference_markdown(cls: type = ExperimentConfig) -> str:
    """The whole reference as Markdown (deterministic: the committed file must equal it)."""
    lines = [
        "# Configuration reference",
        "",
        f"<!-- Generated from the dataclasses in lesionlab/config/ by `{REGENERATE}`; do not edit by hand. -->",
        "",
        "Every run is configured by one `ExperimentConfig`: dataclass defaults ← the `--config` YAML file ← "
        "`key=value` overrides on the command line (`train.epochs=5`, `data.image_size=96`, `eval.tta=none`). "
        "Values are checked when the config is built; a bad one fails with a message naming its key. "
        "`key[]` rows describe the fields of each entry of a list (e.g. `train.stages: [{epochs: 3, lr: 1e-3}]`). "
        "The resolved config is written to `config.yaml` in every run directory.",
        "",
    ]
    for section in iter_sections(cls):
        title = f"`{section.path}`" if section.path else "Top level"
        lines += [f"## {title}", ""]
        if section.intro:
            lines += [section.intro, ""]
        if not section.keys:
            lines += ["(only the sections below)", ""]
            continue
        lines += ["| key | type | default | description |", "|---|---|---|---|"]
        for k in section.keys:
            type_cell = _cell(k.type) if k.type.startswith("list of") else f"`{_cell(k.type, code=True)}`"
            lines.append(f"| `{k.path}` | {type_cell} | `{_cell(k.default, code=True)}` | {_cell(k.description)} |")
        lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


def write_reference(out: str | Path = DEFAULT_OUTPUT) -> Path:
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(config_reference_markdown(), encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    """``python -m lesionlab.config_reference [OUT]``: write the reference (default ``docs/config-reference.md``)."""
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in ("-h", "--help"):
        print(f"usage: {REGENERATE} [OUT]   (default {DEFAULT_OUTPUT})")
        return 0
    print(write_reference(args[0] if args else DEFAULT_OUTPUT))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
