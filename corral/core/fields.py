"""Field markers: ``Param``, ``Meta``, ``Constant``, ``pathgenerator``, ``field`` and ``tag``.

A config class declares its fields with annotations::

    class Learn(Task):
        epochs: Param[int] = 100                                  # enters the identity
        device: Meta[str] = "cpu"                                 # recorded, not hashed
        version: Constant[int] = 2                                # fixed, always hashed
        checkpoint: Annotated[Path, pathgenerator("model.pt")]   # a path in the job dir

``Param[T]`` is ``Annotated[T, <marker>]``, so type checkers see a plain ``T``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Generic, TypeVar

T = TypeVar("T")


class Kind(enum.Enum):
    """What a field is, which decides how it enters the identity."""

    PARAM = "param"
    META = "meta"
    CONSTANT = "constant"
    GENERATED = "generated"


@dataclass(frozen=True)
class _KindMarker:
    kind: Kind

    def __repr__(self) -> str:
        return f"<{self.kind.value}>"


PARAM_MARKER = _KindMarker(Kind.PARAM)
META_MARKER = _KindMarker(Kind.META)
CONSTANT_MARKER = _KindMarker(Kind.CONSTANT)

Param = Annotated[T, PARAM_MARKER]
"""A parameter: part of the identity unless it equals its declared default."""

Meta = Annotated[T, META_MARKER]
"""A parameter kept in ``params.json`` but never part of the identity."""

Constant = Annotated[T, CONSTANT_MARKER]
"""A fixed value, always part of the identity: a way to version a task."""


@dataclass(frozen=True)
class pathgenerator:
    """Marks ``Annotated[Path, pathgenerator("rel/path")]``: a path inside the job directory.

    The value is generated, never given: it is ``<job directory>/<relpath>``.
    """

    relpath: str

    def __post_init__(self) -> None:
        from pathlib import PurePosixPath

        from corral.errors import ConfigError

        p = PurePosixPath(self.relpath)
        if not self.relpath or p.is_absolute() or ".." in p.parts:
            raise ConfigError(
                f"pathgenerator({self.relpath!r}): expected a non-empty relative path without '..'"
            )


_MISSING: Any = object()


@dataclass(frozen=True)
class FieldSpec:
    """What ``field(...)`` declares: a default or a default factory, and help text."""

    default: Any = _MISSING
    default_factory: Callable[[], Any] | None = None
    help: str | None = None


def field(
    *,
    default: Any = _MISSING,
    default_factory: Callable[[], Any] | None = None,
    help: str | None = None,
) -> Any:
    """Declare a field's default (``default=`` or ``default_factory=``) and help text."""
    from corral.errors import ConfigError

    if default is not _MISSING and default_factory is not None:
        raise ConfigError("field(): give either default= or default_factory=, not both")
    return FieldSpec(default=default, default_factory=default_factory, help=help)


class Tagged(Generic[T]):
    """A value marked with :func:`tag`; the config stores the bare value and records the tag."""

    __slots__ = ("value",)

    def __init__(self, value: T) -> None:
        self.value = value

    def __repr__(self) -> str:
        return f"tag({self.value!r})"


def tag(value: T) -> T:
    """Mark a param value as a tag: shown in ``config.__tags__``, never part of the identity."""
    return Tagged(value)  # type: ignore[return-value]  # unwrapped by the config constructor
