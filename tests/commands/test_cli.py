"""The shape of the command line: one table of commands, each command in the module named after it, the shared
flags declared once, old names that fail with the new one, and help that explains with an example."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

import lesionlab.commands
from lesionlab.cli import RENAMED, SECTIONS, build_parser, command_module, main


def _top_level(parser: argparse.ArgumentParser) -> argparse._SubParsersAction:
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))


def _leaves(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
    for action in subs:
        for name, sub in action.choices.items():
            yield from _leaves(sub, (*path, name))


LEAVES = list(_leaves(build_parser()))


def test_the_table_lists_every_command_once() -> None:
    listed = [name for _, names in SECTIONS for name in names]
    assert len(listed) == len(set(listed))
    assert sorted(_top_level(build_parser()).choices) == sorted(listed)


@pytest.mark.parametrize(("path", "parser"), LEAVES, ids=lambda v: " ".join(v) if isinstance(v, tuple) else "")
def test_a_command_lives_in_the_module_named_after_it(path: tuple[str, ...], parser: argparse.ArgumentParser) -> None:
    func = parser.get_default("func")
    assert func.__module__ == command_module(path[0])


@pytest.mark.parametrize(("path", "parser"), LEAVES, ids=lambda v: " ".join(v) if isinstance(v, tuple) else "")
def test_every_help_has_an_example(path: tuple[str, ...], parser: argparse.ArgumentParser) -> None:
    text = parser.format_help()
    assert text.startswith(f"usage: lesionlab {' '.join(path)} "), text[:80]
    assert re.search(r"^examples?:$", text, re.M), path
    assert f"lesionlab {' '.join(path)}" in text.split("example")[-1], path


def test_the_shared_flags_are_declared_once() -> None:
    folder = Path(lesionlab.commands.__file__).parent
    for module in folder.glob("*.py"):
        text = module.read_text()
        for flag in ("--data-root", "--output-dir", "--out", "--output"):
            declared = text.count(f'add_argument("{flag}"')
            assert declared == (module.name == "common.py" and flag != "--output"), (module.name, flag)


def test_main_help_lists_the_commands_by_section(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for title, names in SECTIONS:
        assert f"\n{title}:\n" in out
        assert all(re.search(rf"^  {re.escape(name)}\b", out, re.M) for name in names)


@pytest.mark.parametrize("old", sorted(RENAMED))
def test_an_old_command_name_fails_naming_the_new_one(old: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-q", old, "runs/x"]) == 2
    assert f"'lesionlab {RENAMED[old]}'" in capsys.readouterr().err
