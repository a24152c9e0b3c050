"""Turn a param's type annotation into a fast validator.

A validator takes a value and returns the value to store (``int`` given to a ``float`` param
becomes a float, ``str`` given to a ``Path`` param becomes a ``Path``, containers are copied),
or raises :class:`Mismatch`. Supported: bool, int, float, str, Path, Enum, None/Optional,
Literal, list, tuple, set and frozenset (both stored as a ``frozenset``), dict with str keys,
Config subclasses, and ``Any``.
"""

from __future__ import annotations

import enum
import types
import typing
from collections.abc import Callable
from pathlib import Path, PurePath
from typing import Any

from corral.core.frozen import thaw
from corral.core.paths import GeneratedPath

Validator = Callable[[Any], Any]

SUPPORTED = (
    "bool, int, float, str, Path, an Enum, None/Optional, Literal, list[T], tuple[T, ...], "
    "set[T], frozenset[T], dict[str, T], a Config subclass, Any"
)


class Mismatch(Exception):
    """A value does not fit the declared type; ``where`` locates it inside containers."""

    def __init__(self, value: Any, where: str = "") -> None:
        super().__init__(where)
        self.value = value
        self.where = where


class UnsupportedType(Exception):
    """An annotation names a type that configs cannot hold."""


def describe(tp: Any) -> str:
    """A short readable name for a type annotation (``list[int]``, ``Model | None``)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(describe(a) for a in typing.get_args(tp))
    if origin is typing.Literal:
        return "Literal[" + ", ".join(repr(a) for a in typing.get_args(tp)) + "]"
    if origin is not None:
        args = typing.get_args(tp)
        inner = ", ".join("..." if a is Ellipsis else describe(a) for a in args)
        return f"{getattr(origin, '__name__', str(origin))}[{inner}]"
    if tp is type(None):
        return "None"
    if tp is Any:
        return "Any"
    return getattr(tp, "__name__", repr(tp))


SHOWN = 40
"""Characters of a given value an error message echoes at most."""


def given(value: Any) -> str:
    """A given value for error messages: its type and, for a scalar, the value itself
    (``str 'x'``, cut to :data:`SHOWN` characters); a tuple's length."""
    if isinstance(value, tuple):
        return f"tuple of length {len(value)}"
    name = type(value).__name__
    if isinstance(value, str | int | float | bool | PurePath) or value is None:
        shown = repr(str(value) if isinstance(value, PurePath) else value)
        if len(shown) > SHOWN:
            shown = shown[: SHOWN - 4] + "...'" if shown[0] == "'" else shown[: SHOWN - 3] + "..."
        return name if value is None else f"{name} {shown}"
    return name


def _check_bool(v: Any) -> Any:
    if v is True or v is False:
        return v
    raise Mismatch(v)


def _check_int(v: Any) -> Any:
    if isinstance(v, int) and not isinstance(v, bool):
        return int(v)
    raise Mismatch(v)


def _check_float(v: Any) -> Any:
    if isinstance(v, float):
        return float(v)
    if isinstance(v, int) and not isinstance(v, bool):
        return float(v)
    raise Mismatch(v)


def _check_str(v: Any) -> Any:
    if isinstance(v, str):
        return str(v)
    raise Mismatch(v)


def _check_path(v: Any) -> Any:
    if isinstance(v, GeneratedPath):
        return v
    if isinstance(v, str | PurePath):
        return Path(v)
    raise Mismatch(v)


def _check_none(v: Any) -> Any:
    if v is None:
        return None
    raise Mismatch(v)


def _check_any(v: Any) -> Any:
    # A read-only container taken from a sealed config becomes a plain one again here.
    return thaw(v)


def _instance_of(cls: type[Any]) -> Validator:
    def check(v: Any) -> Any:
        if isinstance(v, cls):
            return v
        raise Mismatch(v)

    return check


def _list_of(item: Validator) -> Validator:
    def check(v: Any) -> Any:
        if not isinstance(v, list):
            raise Mismatch(v)
        out = []
        for i, x in enumerate(v):
            try:
                out.append(item(x))
            except Mismatch as exc:
                raise Mismatch(exc.value, f"[{i}]{exc.where}") from None
        return out

    return check


def _tuple_of(items: list[Validator] | None, rest: Validator | None) -> Validator:
    def check(v: Any) -> Any:
        if not isinstance(v, tuple):
            raise Mismatch(v)
        if items is not None and len(v) != len(items):
            raise Mismatch(v)
        out = []
        for i, x in enumerate(v):
            validate = items[i] if items is not None else rest
            assert validate is not None
            try:
                out.append(validate(x))
            except Mismatch as exc:
                raise Mismatch(exc.value, f"[{i}]{exc.where}") from None
        return tuple(out)

    return check


def _dict_of(value: Validator) -> Validator:
    def check(v: Any) -> Any:
        if not isinstance(v, dict):
            raise Mismatch(v)
        out = {}
        for k, x in v.items():
            if not isinstance(k, str):
                raise Mismatch(k, f" key {k!r}")
            try:
                out[k] = value(x)
            except Mismatch as exc:
                raise Mismatch(exc.value, f"[{k!r}]{exc.where}") from None
        return out

    return check


def _set_of(item: Validator) -> Validator:
    def check(v: Any) -> Any:
        if not isinstance(v, set | frozenset):
            raise Mismatch(v)
        out = []
        for x in v:
            try:
                out.append(item(x))
            except Mismatch as exc:
                raise Mismatch(exc.value, f" item{exc.where}") from None
        try:
            return frozenset(out)
        except TypeError:  # an item validated into something unhashable
            raise Mismatch(v) from None

    return check


def _union_of(options: list[Validator]) -> Validator:
    def check(v: Any) -> Any:
        for option in options:
            try:
                return option(v)
            except Mismatch:
                continue
        raise Mismatch(v)

    return check


def _literal_of(allowed: tuple[Any, ...]) -> Validator:
    def check(v: Any) -> Any:
        for a in allowed:
            if type(a) is type(v) and a == v:
                return v
        raise Mismatch(v)

    return check


_SIMPLE: dict[Any, Validator] = {
    bool: _check_bool,
    int: _check_int,
    float: _check_float,
    str: _check_str,
    Path: _check_path,
    PurePath: _check_path,
    type(None): _check_none,
    None: _check_none,
    Any: _check_any,
}


def validator_for(tp: Any) -> Validator:
    """Build the validator of annotation ``tp``; raise :class:`UnsupportedType` if unsupported."""
    from corral.core.config import Config

    simple = _SIMPLE.get(tp)
    if simple is not None:
        return simple
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        # Options are tried in declared order; bool is never taken as int (see _check_int).
        return _union_of([validator_for(a) for a in args])
    if origin is typing.Literal:
        if not all(isinstance(a, bool | int | str) or a is None for a in args):
            raise UnsupportedType(describe(tp))
        return _literal_of(args)
    if tp is list or origin is list:
        return _list_of(validator_for(args[0]) if args else _check_any)
    if tp is tuple or origin is tuple:
        if not args:
            return _tuple_of(None, _check_any)
        if len(args) == 2 and args[1] is Ellipsis:
            return _tuple_of(None, validator_for(args[0]))
        if args == ((),):
            return _tuple_of([], None)
        return _tuple_of([validator_for(a) for a in args], None)
    if tp in (set, frozenset) or origin in (set, frozenset):
        return _set_of(validator_for(args[0]) if args else _check_any)
    if tp is dict or origin is dict:
        if args and args[0] is not str:
            raise UnsupportedType(f"{describe(tp)} (dict keys must be str)")
        return _dict_of(validator_for(args[1]) if args else _check_any)
    if isinstance(tp, type) and issubclass(tp, enum.Enum | Config):
        return _instance_of(tp)
    raise UnsupportedType(describe(tp))


def narrower(new: Any, old: Any) -> bool:
    """Whether every value annotation ``new`` accepts is also valid for ``old`` (a field
    override that a base class's code can still rely on)."""
    if new == old or old is Any:
        return True
    union = (typing.Union, types.UnionType)
    new_origin, old_origin = typing.get_origin(new), typing.get_origin(old)
    if new_origin in union:
        return all(narrower(n, old) for n in typing.get_args(new))
    if old_origin in union:
        return any(narrower(new, o) for o in typing.get_args(old))
    if new_origin is typing.Literal:
        try:
            check = validator_for(old)
        except UnsupportedType:
            return False
        try:
            return all(check(v) == v for v in typing.get_args(new))
        except Mismatch:
            return False
    if new is type(None) or new is None:
        return old is type(None) or old is None
    if isinstance(new, type) and isinstance(old, type) and new_origin is None:
        if new is bool:  # a bool is never accepted as an int (see _check_int)
            return old is bool
        return issubclass(new, old) or (new is int and old is float)
    if new_origin is not None and new_origin == old_origin:
        new_args, old_args = typing.get_args(new), typing.get_args(old)
        if len(new_args) != len(old_args):
            return False
        return all(
            a == b or (a is not Ellipsis and b is not Ellipsis and narrower(a, b))
            for a, b in zip(new_args, old_args, strict=True)
        )
    return False
