"""Name → object registries with helpful errors (the timm ``register_model`` / MONAI ``look_up_option`` pattern)."""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from lesionlab.errors import LesionLabError

T = TypeVar("T")


class UnknownNameError(LesionLabError, KeyError):
    """Raised when a name is not registered; the message lists valid names and the closest match."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0])


def plural(noun: str) -> str:
    """English plural of a registry kind: loss → losses, taxonomy → taxonomies, offline weights → unchanged."""
    if noun.endswith(("ss", "x", "ch", "sh")):
        return noun + "es"
    if noun.endswith("y") and noun[-2:-1] not in "aeiou":
        return noun[:-1] + "ies"
    return noun if noun.endswith("s") else noun + "s"


def _summary(obj: object) -> str:
    """First docstring line of a function or class. Instances get none: their ``__doc__`` is their type's."""
    if not (inspect.isfunction(obj) or inspect.isclass(obj) or inspect.ismethod(obj)):
        return ""
    lines = (obj.__doc__ or "").strip().splitlines()
    return lines[0] if lines else ""


class Registry(Generic[T]):
    """A small, explicit registry: ``@REG.register("name")`` to add, ``REG.get("name")`` to look up."""

    def __init__(self, kind: str, usable: Callable[[T], bool] | None = None) -> None:
        self.kind = kind
        self._usable = usable  # entries failing it stay registered (explained on use) but are not offered
        self._items: dict[str, T] = {}
        self._help: dict[str, str] = {}

    def register(self, name: str, *, help: str = "") -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            self.add(name, obj, help=help)
            return obj

        return decorator

    def add(self, name: str, obj: T, *, help: str = "") -> None:
        key = name.lower()
        if key in self._items:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._items[key] = obj
        self._help[key] = help or _summary(obj)

    def get(self, name: str) -> T:
        key = str(name).lower()
        if key not in self._items:
            close = difflib.get_close_matches(key, self.valid_names(), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise UnknownNameError(
                f"Unknown {self.kind} {name!r}.{hint} Valid {plural(self.kind)}: {', '.join(self.valid_names())}."
            )
        return self._items[key]

    def valid_names(self) -> list[str]:
        """The names an error message offers: every registered one that is usable."""
        return [n for n in self.names() if self._usable is None or self._usable(self._items[n])]

    def describe(self, name: str) -> str:
        return self._help.get(name.lower(), "")

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)
