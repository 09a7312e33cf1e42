"""One small generic registry for probes, encoders and datasets.

Modelled on lm-evaluation-harness' ``lm_eval/api/registry.py``: decorator registration, lazy
``"module:attr"`` entries for heavy objects, duplicate names are an error, unknown names get a
did-you-mean with the full list of valid choices. It lives in ``probes/`` because that is the
innermost package (torch only); ``backbones/`` and ``orchestrator/`` import it from here.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class RegistryError(KeyError):
    """An unknown or duplicate registry name. ``str()`` is the full, user-facing message."""

    def __str__(self) -> str:  # KeyError quotes its argument; we want the plain message.
        return str(self.args[0]) if self.args else ""


def did_you_mean(value: str, choices: list[str] | tuple[str, ...]) -> str:
    """Return ``" Did you mean 'x'?"`` for the closest choice, or an empty string."""
    close = difflib.get_close_matches(value, list(choices), n=1, cutoff=0.5)
    return f" Did you mean {close[0]!r}?" if close else ""


class Registry(Generic[T]):
    """Name -> object map with did-you-mean errors and lazy ``"module:attr"`` entries."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T | str] = {}
        # names outside the registry (e.g. ``encoder=file.py:Name``): ``accepts(name)`` says
        # whether ``resolve(name)`` builds the entry; the names are not listed
        self.accepts: Callable[[str], bool] | None = None
        self.resolve: Callable[[str], T] | None = None

    def register(self, name: str, obj: T | str | None = None) -> Callable[[T], T] | T | str:
        """Register ``obj`` under ``name``; without ``obj`` return a decorator."""
        if obj is not None:
            self._add(name, obj)
            return obj

        def decorator(target: T) -> T:
            self._add(name, target)
            return target

        return decorator

    def _add(self, name: str, obj: T | str) -> None:
        if name in self._entries:
            raise RegistryError(
                f"{self.kind} {name!r} is already registered; pick another name "
                f"(registered: {', '.join(sorted(self._entries))})."
            )
        self._entries[name] = obj

    def get(self, name: str) -> T:
        """Return the entry, importing a lazy ``"module:attr"`` entry on first use."""
        if name not in self._entries:
            if self.resolve is not None and name in self:
                return self.resolve(name)
            raise RegistryError(self.unknown_message(name))
        entry = self._entries[name]
        if isinstance(entry, str):
            module_name, _, attr = entry.partition(":")
            entry = getattr(importlib.import_module(module_name), attr)
            self._entries[name] = entry
        return entry  # type: ignore[return-value]

    def unknown_message(self, name: str) -> str:
        choices = self.names()
        return (
            f"unknown {self.kind} {name!r}.{did_you_mean(str(name), choices)} "
            f"Valid {self.kind}s: {', '.join(choices)}."
        )

    def check(self, name: str) -> None:
        """Raise :class:`RegistryError` if ``name`` is not registered (imports nothing)."""
        if name not in self:
            raise RegistryError(self.unknown_message(name))

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        if name in self._entries:
            return True
        return isinstance(name, str) and self.accepts is not None and self.accepts(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def items(self) -> Iterator[tuple[str, Any]]:
        for name in self.names():
            yield name, self.get(name)
