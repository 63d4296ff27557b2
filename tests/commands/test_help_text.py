"""Every command's help reads as written: argparse %-formats help strings but not descriptions, so a description
must not escape its percent signs."""

from __future__ import annotations

import argparse

import pytest

from lesionlab.cli import build_parser


def _parsers(parser: argparse.ArgumentParser, prefix: str = "lesionlab"):
    yield prefix, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, f"{prefix} {name}")


@pytest.mark.parametrize(("name", "parser"), list(_parsers(build_parser())), ids=lambda v: v if isinstance(v, str)
                         else "")
def test_help_has_no_doubled_percent(name: str, parser: argparse.ArgumentParser) -> None:
    assert "%%" not in parser.format_help(), name
