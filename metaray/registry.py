"""Named components resolved lazily, so that `import metaray` and `metaray --help` import nothing heavy."""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from metaray.errors import SpecError

T = TypeVar("T")


def import_object(path: str) -> Any:
    """Import ``"package.module.attr"`` or ``"package.module:attr"`` and return the attribute."""
    module, sep, attr = path.partition(":")
    if not sep:
        module, _, attr = path.rpartition(".")
    if not module or not attr:
        raise ImportError(f"not an import path: {path!r}")
    obj = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def check_choice(key: str, kind: str, value, allowed) -> str:
    """Return ``value`` if it is one of ``allowed``, else raise a SpecError that lists them."""
    allowed = sorted(allowed)
    if value not in allowed:
        close = difflib.get_close_matches(str(value), allowed, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise SpecError(key, f"unknown {kind}{hint}", allowed=allowed, got=value)
    return value


@dataclass(frozen=True)
class Rule:
    """A declared constraint on one value: the check, what it means, and the allowed values for the message."""

    ok: Callable[[Any], bool]
    problem: str
    allowed: str


@dataclass(frozen=True)
class Option:
    """An option a component declares (a scheduler's ``grace_period``): its type, its default, the rule its values
    obey and, for text, the values allowed. ``metaray.spec`` builds the spec's section from these and checks them."""

    type: type
    default: Any
    rule: Rule | None = None
    choices: tuple = ()


class Registry(Generic[T]):
    """A mapping from short names to components; values may be import paths, loaded on first use.

    Args:
        kind: what the registry holds, used in messages ("learner", "metric").
        key: the spec key whose value names an entry, used in messages ("learner.name").

    Example:
        >>> r = Registry("sampler", "subsets.sampler")
        >>> r.register("kfold", "sklearn.model_selection.KFold")
        >>> r.get("kfold").__name__  # imported on first use
        'KFold'
        >>> r.get("jackknife")
        Traceback (most recent call last):
        ...
        metaray.errors.SpecError: subsets.sampler: unknown sampler; allowed: 'kfold'; got: 'jackknife'
    """

    def __init__(self, kind: str, key: str):
        self.kind, self.key = kind, key
        self._entries: dict[str, Any] = {}

    def register(self, name: str, value: T | str) -> None:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = value

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def names(self) -> list[str]:
        return sorted(self._entries)

    def check(self, name: str, key: str | None = None) -> str:
        """Return ``name`` if registered, else raise a SpecError listing the known names."""
        return check_choice(key or self.key, self.kind, name, self.names())

    def get(self, name: str, key: str | None = None) -> T:
        value = self._entries[self.check(name, key)]
        if isinstance(value, str):
            value = self._entries[name] = import_object(value)
        return value
