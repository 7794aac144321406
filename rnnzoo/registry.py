"""Name -> constructor registries (timm's ``register_model`` / ``create_model`` pattern).

Every pluggable family (cells, models, tasks) keeps one ``Registry``. Names are the
public vocabulary of configs, so an unknown name is an error that lists the valid ones,
and registering a name twice is an error rather than a silent override.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from rnnzoo.errors import UnknownNameError

T = TypeVar("T", bound=Callable[..., object])


class Registry(Generic[T]):
    """A named collection of constructors for one family of objects (``"cell"``, ...)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator form of ``add``."""

        def decorator(obj: T) -> T:
            self.add(name, obj)
            return obj

        return decorator

    def add(self, name: str, obj: T) -> None:
        """Register ``obj`` as ``name``; a name can be taken only once."""
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = obj

    def get(self, name: str) -> T:
        """The constructor registered as ``name``; unknown names list the valid ones."""
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        close = difflib.get_close_matches(name, self._entries, n=3)
        hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
        return f"unknown {self.kind} {name!r}{hint}; valid names: {', '.join(self.names())}"

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
