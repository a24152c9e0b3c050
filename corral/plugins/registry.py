"""``Registry``: named classes (launchers, connectors) contributed by plugins."""

from __future__ import annotations

from typing import Generic, Protocol, TypeVar

from corral.errors import PluginError


class Named(Protocol):
    """A class with a registered ``name``."""

    name: str


T = TypeVar("T")


class Registry(Generic[T]):
    """Classes by registered name; remembers which plugin added each."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._classes: dict[str, type[T]] = {}
        self._origins: dict[str, str] = {}
        self.current_plugin = "?"

    def add(self, cls: type[T]) -> None:
        """Register ``cls`` under ``cls.name``; a name taken by another class is an error."""
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not name:
            raise PluginError(
                f"plugin {self.current_plugin!r}: {self.kind} {cls.__qualname__} has no `name`"
            )
        existing = self._classes.get(name)
        if existing is not None and existing is not cls:
            raise PluginError(
                f"{self.kind} name {name!r} registered twice: by plugin "
                f"{self._origins[name]!r} ({existing.__module__}.{existing.__qualname__}) and "
                f"by plugin {self.current_plugin!r} ({cls.__module__}.{cls.__qualname__})"
            )
        self._classes[name] = cls
        self._origins[name] = self.current_plugin

    def get(self, name: str) -> type[T]:
        """The class registered as ``name``; an unknown name lists the known ones."""
        try:
            return self._classes[name]
        except KeyError:
            known = ", ".join(sorted(self._classes)) or "(none)"
            raise PluginError(f"unknown {self.kind} {name!r}; known: {known}") from None

    def origin(self, name: str) -> str:
        """The plugin that registered ``name``."""
        return self._origins[name]

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._classes)

    def __contains__(self, name: object) -> bool:
        return name in self._classes
