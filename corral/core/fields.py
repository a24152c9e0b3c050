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
from typing import Annotated, Any, Generic, TypeVar

T = TypeVar("T")


class Kind(enum.Enum):
    """What a field is, which decides how it enters the identity."""

    PARAM = "param"
    META = "meta"
    CONSTANT = "constant"
    GENERATED = "generated"


class _KindMarker:
    __slots__ = ("kind",)

    def __init__(self, kind: Kind) -> None:
        self.kind = kind

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


class pathgenerator:
    """Marks ``Annotated[Path, pathgenerator("rel/path")]``: a path inside the job directory.

    The value is generated, never given: it is ``<job directory>/<relpath>``.
    """

    __slots__ = ("relpath",)

    def __init__(self, relpath: str) -> None:
        from pathlib import PurePosixPath

        from corral.errors import ConfigError

        p = PurePosixPath(relpath) if isinstance(relpath, str) else None
        if p is None or not relpath or p.is_absolute() or ".." in p.parts:
            raise ConfigError(
                f"pathgenerator({relpath!r}): expected a non-empty relative path without '..'"
            )
        self.relpath = relpath

    def __eq__(self, other: object) -> bool:
        return isinstance(other, pathgenerator) and other.relpath == self.relpath

    def __hash__(self) -> int:
        return hash(("pathgenerator", self.relpath))

    def __repr__(self) -> str:
        return f"pathgenerator({self.relpath!r})"


_MISSING: Any = object()


class FieldSpec:
    """What ``field(...)`` declares: a default or a default factory, and help text."""

    __slots__ = ("default", "default_factory", "help")

    def __init__(
        self,
        default: Any = _MISSING,
        default_factory: Callable[[], Any] | None = None,
        help: str | None = None,
    ) -> None:
        self.default = default
        self.default_factory = default_factory
        self.help = help


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
