"""Read-only lists and dicts: the container values of a sealed config.

Sealing a config (taking its identifier, submitting it, rebuilding it inside a job) replaces
every list and dict in its field values, at any depth, by a :class:`FrozenList` or
:class:`FrozenDict`. They are real ``list`` / ``dict`` subclasses (equal to plain ones,
JSON-serializable, encoded as lists and dicts by the identity), whose mutating methods raise
:class:`~corral.errors.ConfigError` naming the config class and field. Copies (``list(x)``,
``x.copy()``, slices, ``x + y``) are plain, mutable containers.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, NoReturn

from corral.errors import ConfigError


def _refuse(where: str) -> NoReturn:
    raise ConfigError(
        f"{where}: cannot modify, the config is sealed "
        "(its identifier was taken or it was submitted); modify a copy"
    )


class FrozenList(list[Any]):
    """A list that refuses changes; ``where`` (``Class.field``) names it in errors."""

    __slots__ = ("where",)
    where: str

    def __init__(self, items: Iterable[Any] = (), where: str = "") -> None:
        if hasattr(self, "where"):  # calling __init__ again would refill the list
            _refuse(self.where)
        super().__init__(items)
        self.where = where

    def __reduce__(self) -> tuple[Any, ...]:
        # The default reduction of a list subclass refills it with append(): rebuild instead.
        return (type(self), (list(self), self.where))

    def __setitem__(self, *args: Any, **kwargs: Any) -> NoReturn:
        """Refused: the list is read-only."""
        _refuse(self.where)

    def __delitem__(self, *args: Any, **kwargs: Any) -> NoReturn:
        """Refused: the list is read-only."""
        _refuse(self.where)

    if not TYPE_CHECKING:  # typeshed ties these to __add__ / __mul__; refusing breaks that

        def __iadd__(self, other):
            """Refused: the list is read-only."""
            _refuse(self.where)

        def __imul__(self, other):
            """Refused: the list is read-only."""
            _refuse(self.where)

    def append(self, *args: Any, **kwargs: Any) -> NoReturn:
        """Refused: the list is read-only."""
        _refuse(self.where)

    def extend(self, *args: Any, **kwargs: Any) -> NoReturn:
        """Refused: the list is read-only."""
        _refuse(self.where)

    def insert(self, *args: Any, **kwargs: Any) -> NoReturn:
        """Refused: the list is read-only."""
        _refuse(self.where)

    def pop(self, *args: Any, **kwargs: Any) -> NoReturn:
        """Refused: the list is read-only."""
        _refuse(self.where)

    def remove(self, *args: Any, **kwargs: Any) -> NoReturn:
        """Refused: the list is read-only."""
        _refuse(self.where)

    def clear(self, *args: Any, **kwargs: Any) -> NoReturn:
        """Refused: the list is read-only."""
        _refuse(self.where)

    def sort(self, *args: Any, **kwargs: Any) -> NoReturn:
        """Refused: the list is read-only (``sorted(x)`` gives a sorted copy)."""
        _refuse(self.where)

    def reverse(self, *args: Any, **kwargs: Any) -> NoReturn:
        """Refused: the list is read-only."""
        _refuse(self.where)


class FrozenDict(dict[str, Any]):
    """A dict that refuses changes; ``where`` (``Class.field``) names it in errors."""

    __slots__ = ("where",)
    where: str

    def __init__(self, items: Any = (), where: str = "") -> None:
        if hasattr(self, "where"):  # calling __init__ again would add items
            _refuse(self.where)
        super().__init__(items)
        self.where = where

    def __reduce__(self) -> tuple[Any, ...]:
        # The default reduction of a dict subclass refills it with __setitem__: rebuild instead.
        return (type(self), (dict(self), self.where))

    def __setitem__(self, *args: Any, **kwargs: Any) -> NoReturn:
        """Refused: the dict is read-only."""
        _refuse(self.where)

    def __delitem__(self, *args: Any, **kwargs: Any) -> NoReturn:
        """Refused: the dict is read-only."""
        _refuse(self.where)

    if not TYPE_CHECKING:  # typeshed ties it to __or__; refusing breaks that

        def __ior__(self, other):
            """Refused: the dict is read-only."""
            _refuse(self.where)

    def clear(self, *args: Any, **kwargs: Any) -> NoReturn:
        """Refused: the dict is read-only."""
        _refuse(self.where)

    def pop(self, *args: Any, **kwargs: Any) -> NoReturn:
        """Refused: the dict is read-only."""
        _refuse(self.where)

    def popitem(self, *args: Any, **kwargs: Any) -> NoReturn:
        """Refused: the dict is read-only."""
        _refuse(self.where)

    def setdefault(self, *args: Any, **kwargs: Any) -> NoReturn:
        """Refused: the dict is read-only."""
        _refuse(self.where)

    def update(self, *args: Any, **kwargs: Any) -> NoReturn:
        """Refused: the dict is read-only."""
        _refuse(self.where)


def freeze(value: Any, where: str) -> Any:
    """``value`` with every list and dict in it, at any depth (through tuples too), read-only.

    Other values (configs, paths, scalars) are kept as they are; a tuple stays a tuple.
    """
    t = type(value)
    if t is list or t is FrozenList:
        return FrozenList([freeze(v, where) for v in value], where)
    if t is dict or t is FrozenDict:
        return FrozenDict({k: freeze(v, where) for k, v in value.items()}, where)
    if t is tuple:
        return tuple([freeze(v, where) for v in value])
    return value


def thaw(value: Any) -> Any:
    """A copy of a frozen container as plain, mutable lists and dicts; other values as given."""
    t = type(value)
    if t is FrozenList:
        return [thaw(v) for v in value]
    if t is FrozenDict:
        return {k: thaw(v) for k, v in value.items()}
    return value
