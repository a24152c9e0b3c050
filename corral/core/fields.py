"""Field markers: ``Param``, ``Meta``, ``Constant``, ``pathgenerator``, ``partial``,
``field`` and ``tag``.

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


class Partial:
    """What :func:`partial` declares: the params left out of a secondary identity."""

    __slots__ = ("exclude",)

    def __init__(self, exclude: tuple[str, ...]) -> None:
        self.exclude = exclude

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Partial) and other.exclude == self.exclude

    def __hash__(self) -> int:
        return hash(("partial", self.exclude))

    def __repr__(self) -> str:
        return f"partial(exclude={list(self.exclude)!r})"


def partial(*, exclude: list[str] | tuple[str, ...]) -> Partial:
    """A partial identity: the config's identity without the params ``exclude`` names (field
    names, or groups given with ``field(group=...)``). Given to a path generator,
    ``pathgenerator("checkpoints", partial=partial(exclude=["epochs"]))``, it makes a path
    that every config differing only in those params shares."""
    from corral.errors import ConfigError

    if isinstance(exclude, str) or not all(isinstance(n, str) and n for n in exclude):
        raise ConfigError(f"partial(exclude={exclude!r}): expected a list of param names")
    if not exclude:
        raise ConfigError("partial(exclude=[]): name at least one param or group to leave out")
    return Partial(tuple(sorted(set(exclude))))


class pathgenerator:
    """Marks ``Annotated[Path, pathgenerator("rel/path")]``: a path inside the job directory.

    The value is generated, never given: it is ``<job directory>/<relpath>``. With
    ``partial=partial(exclude=[...])`` it is ``<workspace>/partials/<type id>/<partial
    identifier>/<relpath>`` instead, shared by the configs that differ only in those params.
    """

    __slots__ = ("partial", "relpath")

    def __init__(self, relpath: str, *, partial: Partial | None = None) -> None:
        from pathlib import PurePosixPath

        from corral.errors import ConfigError

        p = PurePosixPath(relpath) if isinstance(relpath, str) else None
        if p is None or not relpath or p.is_absolute() or ".." in p.parts:
            raise ConfigError(
                f"pathgenerator({relpath!r}): expected a non-empty relative path without '..'"
            )
        if partial is not None and not isinstance(partial, Partial):
            raise ConfigError(f"pathgenerator({relpath!r}, partial=...): expected partial(...)")
        self.relpath = relpath
        self.partial = partial

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, pathgenerator)
            and other.relpath == self.relpath
            and other.partial == self.partial
        )

    def __hash__(self) -> int:
        return hash(("pathgenerator", self.relpath, self.partial))

    def __repr__(self) -> str:
        more = f", partial={self.partial!r}" if self.partial is not None else ""
        return f"pathgenerator({self.relpath!r}{more})"


_MISSING: Any = object()


class FieldSpec:
    """What ``field(...)`` declares: a default or a default factory, help text, a group, and
    whether it overrides a base class's field of another type."""

    __slots__ = ("default", "default_factory", "group", "help", "overrides")

    def __init__(
        self,
        default: Any = _MISSING,
        default_factory: Callable[[], Any] | None = None,
        help: str | None = None,
        group: str | None = None,
        overrides: bool = False,
    ) -> None:
        self.default = default
        self.default_factory = default_factory
        self.help = help
        self.group = group
        self.overrides = overrides


def field(
    *,
    default: Any = _MISSING,
    default_factory: Callable[[], Any] | None = None,
    help: str | None = None,
    group: str | None = None,
    overrides: bool = False,
) -> Any:
    """Declare a field's default (``default=`` or ``default_factory=``) and help text.

    :param group: a name :func:`partial` can exclude, shared by several params.
    :param overrides: this field redeclares a base class's field with a narrower type
        (checked: a subclass of a config type, a subset of a ``Literal``, ``int`` for
        ``float``...).
    """
    from corral.errors import ConfigError

    if default is not _MISSING and default_factory is not None:
        raise ConfigError("field(): give either default= or default_factory=, not both")
    if group is not None and (not isinstance(group, str) or not group):
        raise ConfigError(f"field(group={group!r}): expected a non-empty name")
    return FieldSpec(default, default_factory, help, group, bool(overrides))


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
