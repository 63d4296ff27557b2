"""The generated configuration reference covers every key and matches the committed docs/config-reference.md."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path

from lesionlab.config import ExperimentConfig
from lesionlab.config_reference import REGENERATE, config_reference_markdown, field_comments, leaf_keys, type_name

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "docs" / "config-reference.md"


def _leaves(cls: type, prefix: str = "") -> list[str]:
    """Every leaf key of a config dataclass, walked independently of the generator."""
    out = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp, key = hints[f.name], f"{prefix}{f.name}"
        args = [a for a in typing.get_args(tp) if a is not type(None) and a is not Ellipsis]
        if dataclasses.is_dataclass(tp) or (len(args) == 1 and typing.get_origin(tp) is not tuple
                                            and dataclasses.is_dataclass(args[0])):
            out += _leaves(tp if dataclasses.is_dataclass(tp) else args[0], f"{key}.")
            continue
        out.append(key)
        if typing.get_origin(tp) in (tuple, list) and len(args) == 1 and dataclasses.is_dataclass(args[0]):
            out += _leaves(args[0], f"{key}[].")
    return out


def test_every_leaf_field_appears_in_the_reference() -> None:
    text = config_reference_markdown()
    leaves = _leaves(ExperimentConfig)
    assert {"task", "data.split.seed", "eval.tta"} <= set(leaves) and any("[]." in k for k in leaves)
    missing = [k for k in leaves if f"| `{k}` |" not in text]
    assert not missing, f"keys missing from the config reference: {missing}"
    assert sorted(leaf_keys()) == sorted(leaves)


def test_committed_reference_is_up_to_date() -> None:
    assert COMMITTED.is_file(), f"{COMMITTED} is missing; write it with `{REGENERATE}`"
    assert COMMITTED.read_text(encoding="utf-8") == config_reference_markdown(), (
        f"docs/config-reference.md is out of date with lesionlab/config.py; regenerate it with `{REGENERATE}` "
        "(from the repository root) and commit the result")


# -- the generator on synthetic configs: nested sections, lists of dataclasses, comments, optional sections ----


@dataclass
class _Inner:
    """Inner section."""

    rate: float = 0.1  # the rate
    # a comment above,
    # on two lines
    name: str = "x"
    plain: int = 3


@dataclass
class _Entry:
    size: int = 1  # entry size


@dataclass
class _Outer:
    """Outer section.

    With a second paragraph.
    """

    inner: _Inner = field(default_factory=_Inner)
    maybe: _Inner | None = None  # an optional section
    entries: tuple[_Entry, ...] = ()  # list of entries
    tags: tuple[str, ...] = ("a", "b")
    mapping: dict[str, int] = field(default_factory=lambda: {"k": 1})
    flag: bool | None = None  # pipe | in text, <angle>


def test_generator_walks_nested_and_listed_dataclasses() -> None:
    text = config_reference_markdown(_Outer)
    assert sorted(leaf_keys(_Outer)) == sorted(_leaves(_Outer))
    assert {"maybe.rate", "entries", "entries[].size"} <= set(leaf_keys(_Outer))
    for heading in ("## Top level", "## `inner`", "## `maybe`", "## `entries[]`"):
        assert heading in text
    assert "| `inner.rate` | `float` | `0.1` | the rate |" in text
    assert "| `inner.name` | `str` | `x` | a comment above, on two lines |" in text
    assert "| `inner.plain` | `int` | `3` |  |" in text
    assert "| `entries` | list of `entries[]` entries | `[]` | list of entries |" in text
    assert "| `entries[].size` | `int` | `1` | entry size |" in text
    assert "| `tags` | `tuple[str, ...]` | `[a, b]` |" in text
    assert "| `mapping` | `dict[str, int]` | `{k: 1}` |" in text
    assert "| `flag` | `bool \\| None` | `null` | pipe \\| in text, &lt;angle&gt; |" in text
    assert "Outer section.\n\nWith a second paragraph." in text
    assert "## `maybe`\n\nInner section.\n\nOptional section, `null` by default. an optional section" in text


def test_field_comments_and_type_names() -> None:
    assert field_comments(_Inner) == {"rate": "the rate", "name": "a comment above, on two lines"}
    assert type_name(typing.Literal["a", "b"]) == "one of: a, b"
    assert type_name(int | None) == "int | None"
    assert type_name(tuple[float, ...]) == "tuple[float, ...]"


def test_module_imports_only_the_config() -> None:
    code = ("import sys, lesionlab.config_reference as r; r.config_reference_markdown(); "
            "print(sorted(m for m in sys.modules if m.startswith('lesionlab')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(ROOT / "src"), "PATH": ""}).stdout
    assert out.strip() == "['lesionlab', 'lesionlab.config', 'lesionlab.config_reference', 'lesionlab.errors']"


def test_main_writes_the_file(tmp_path: Path) -> None:
    from lesionlab.config_reference import main

    out = tmp_path / "ref.md"
    assert main([str(out)]) == 0
    assert out.read_text(encoding="utf-8") == config_reference_markdown()
