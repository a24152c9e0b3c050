"""``Config``: typed, keyword-only, sealable configuration objects declared by annotations."""

from __future__ import annotations

import re
import sys
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from corral.core.classinfo import ClassInfo, FieldInfo, class_info
from corral.core.fields import Kind, Tagged
from corral.core.frozen import FrozenDict, FrozenList, freeze
from corral.core.paths import UNSUBMITTED, GeneratedPath
from corral.core.validation import Mismatch, describe, given
from corral.errors import ConfigError

_ID_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")


class Config:
    """Base class of typed configurations.

    Declare fields with ``Param[T]``, ``Meta[T]``, ``Constant[T]`` and
    ``Annotated[Path, pathgenerator("rel")]``; build with keyword arguments only. A config is
    sealed (immutable, its list and dict values included) once its identifier is taken or it
    is submitted. Give a class a stable type id, independent of its module, with
    ``class X(Config, id="project.X")``.
    """

    __corral_id__: ClassVar[str | None] = None
    __taskdir__: Path
    __maintaskdir__: Path

    def __init_subclass__(cls, *, id: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if id is not None:
            if not isinstance(id, str) or not _ID_PATTERN.match(id):
                raise ConfigError(
                    f"{cls.__qualname__}: invalid id {id!r}: letters, digits, '_', '.', '-' only"
                )
            cls.__corral_id__ = id
        else:
            cls.__corral_id__ = None  # an explicit id is never inherited
        try:
            class_info(cls)  # declaration errors show at class definition
        except ConfigError as exc:
            if not isinstance(exc.__cause__, NameError):
                raise
            # Forward references are resolved on first use, also against the names visible
            # where the class was defined (a class declared inside a function).
            frame = sys._getframe(1)
            type.__setattr__(cls, "_corral_localns", {**frame.f_locals, cls.__name__: cls})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        cls = type(self)
        if args:
            raise ConfigError(f"{cls.__qualname__}() takes keyword arguments only")
        info = class_info(cls)
        d = self.__dict__
        tags: dict[str, Any] | None = None
        for name, value in kwargs.items():
            f = info.fields.get(name)
            if f is None or f.kind is Kind.GENERATED:
                raise ConfigError(_unknown_message(cls, info, name))
            if type(value) is Tagged:
                value = value.value
                if tags is None:
                    tags = {}
                tags[name] = value
            d[name] = _validate(cls, f, value)
        for f in info.defaults:
            if f.name not in d:
                d[f.name] = f.make_default()
        if tags is not None:
            d["_corral_tags"] = tags

    if not TYPE_CHECKING:

        def __getattr__(self, name: str) -> Any:
            f = class_info(type(self)).fields.get(name)
            if f is not None and f.kind is Kind.GENERATED:
                return generated_path(self, f)
            if f is not None:
                raise AttributeError(f"{type(self).__qualname__}.{name} is not set")
            if name == "__taskdir__":
                raise AttributeError(
                    f"{type(self).__qualname__} has no job directory: submit it first"
                )
            raise AttributeError(f"{type(self).__qualname__!r} object has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        cls = type(self)
        f = class_info(cls).fields.get(name)
        if f is None:
            object.__setattr__(self, name, value)
            return
        if f.kind is Kind.GENERATED:
            raise ConfigError(f"{cls.__qualname__}.{name} is a generated path and cannot be set")
        if self.__dict__.get("_corral_sealed"):
            raise ConfigError(
                f"{cls.__qualname__}.{name}: cannot assign, the config is sealed "
                "(its identifier was taken or it was submitted)"
            )
        if type(value) is Tagged:
            value = value.value
            self.__dict__.setdefault("_corral_tags", {})[name] = value
        self.__dict__[name] = _validate(cls, f, value)

    def __delattr__(self, name: str) -> None:
        if name in class_info(type(self)).fields:
            raise ConfigError(f"{type(self).__qualname__}.{name}: fields cannot be deleted")
        object.__delattr__(self, name)

    @property
    def __tags__(self) -> dict[str, Any]:
        """Tags of the config and of every config inside it, sub-tasks included, except
        below a config given to :func:`~corral.core.configops.stop_tags`. On a name
        given twice, the tag nearest this config wins (at equal depth, the first field in
        declaration order)."""
        tags: dict[str, Any] = {}
        seen = {id(self)}
        level = [self]
        while level:
            below: list[Config] = []
            for config in level:
                for name, value in config.__dict__.get("_corral_tags", {}).items():
                    tags.setdefault(name, value)
                for child in _nested(config):
                    if id(child) not in seen and not child.__dict__.get("_corral_isolated"):
                        seen.add(id(child))
                        below.append(child)
            level = below
        return tags

    def tag(self, name: str, value: Any) -> Any:
        """Tag the config: ``name`` is shown in ``__tags__`` (of this config and of those
        that contain it) with ``value`` (str, int, float, bool or None), never part of the
        identity. Returns the config."""
        cls = type(self).__qualname__
        if not isinstance(name, str) or not _ID_PATTERN.match(name):
            raise ConfigError(f"{cls}.tag({name!r}, ...): a tag name is letters, digits, '_'")
        if not (value is None or isinstance(value, str | int | float | bool)):
            raise ConfigError(
                f"{cls}.tag({name!r}, ...): expected str, int, float, bool or None, "
                f"got {given(value)}"
            )
        if self.__dict__.get("_corral_sealed"):
            raise ConfigError(
                f"{cls}.tag({name!r}, ...): the config is sealed (its identifier was taken or "
                "it was submitted): tag it before"
            )
        self.__dict__.setdefault("_corral_tags", {})[name] = value
        return self

    def __repr__(self) -> str:
        info = class_info(type(self))
        parts = [f"{n}={self.__dict__[n]!r}" for n in info.fields if n in self.__dict__]
        return f"{type(self).__qualname__}({', '.join(parts)})"


def _validate(cls: type[Config], f: FieldInfo, value: Any) -> Any:
    if f.kind is Kind.CONSTANT:
        from corral.core.identity import encode

        if encode(value) != f.default_encoding():
            raise ConfigError(
                f"{cls.__qualname__}.{f.name} is a Constant ({f.default!r}); it cannot be set"
            )
        return f.make_default()  # a copy: the declared default is shared by every instance
    try:
        return f.validate(value)
    except Mismatch as exc:
        inside = f" (at {f.name}{exc.where}: {given(exc.value)})" if exc.where else ""
        hint = ""
        if typing.get_origin(f.annotation) is typing.Literal and isinstance(value, str):
            from corral.errors import did_you_mean

            choices = [a for a in typing.get_args(f.annotation) if isinstance(a, str)]
            hint = did_you_mean(value, choices)
        raise ConfigError(
            f"{cls.__qualname__}.{f.name}: expected {describe(f.annotation)}, "
            f"got {given(value)}{inside}{hint}"
        ) from None


_CONTAINERS = (list, dict, tuple, FrozenList, FrozenDict)


def seal(config: Config) -> None:
    """Make ``config`` immutable: its fields can no longer be assigned, and every list and
    dict in their values (and in its tags) becomes read-only (see :mod:`corral.core.frozen`).

    Nested configs are sealed by whoever seals them (:func:`corral.core.identity.digest`
    seals a whole tree).
    """
    d = config.__dict__
    cls = type(config)
    for name in class_info(cls).value_fields:
        value = d.get(name)
        if type(value) in _CONTAINERS:
            d[name] = freeze(value, f"{cls.__qualname__}.{name}")
    tags = d.get("_corral_tags")
    if tags:
        d["_corral_tags"] = {
            k: freeze(v, f"{cls.__qualname__}.{k} (tag)") for k, v in tags.items()
        }
    d["_corral_sealed"] = True


def _unknown_message(cls: type[Config], info: ClassInfo, name: str) -> str:
    settable = sorted(n for n, f in info.fields.items() if f.kind is not Kind.GENERATED)
    if name in info.generated:
        return f"{cls.__qualname__}.{name} is a generated path and cannot be given"
    from corral.errors import did_you_mean

    return (
        f"{cls.__qualname__}: unknown param {name!r}{did_you_mean(name, settable)}; "
        f"valid: {', '.join(settable) or '(none)'}"
    )


def generated_path(config: Config, f: FieldInfo) -> GeneratedPath:
    """The value of a ``pathgenerator`` field: under the job directory of the task that owns
    the config once it is known (see :mod:`corral.core.generated`), else under
    ``__unsubmitted__``."""
    from corral.core.generated import base_of

    assert f.relpath is not None
    where = base_of(config)
    if f.partial is not None:
        return _partial_path(config, f, where[0] if where is not None else None)
    if where is None:
        return GeneratedPath.make(UNSUBMITTED / f.relpath, f.relpath)
    owner, under = where
    relpath = (under / f.relpath).as_posix()
    taskdir = owner.__dict__.get("__taskdir__")
    path = Path(taskdir) / relpath if taskdir is not None else UNSUBMITTED / relpath
    # A task's own paths name it before it is submitted (their identity is known); a nested
    # config's are only known once its owner is.
    if taskdir is None and owner is not config:
        return GeneratedPath.make(path, f.relpath)
    return GeneratedPath.make(path, relpath, producer=owner)


PARTIALS = "partials"
"""The workspace directory of partial paths: ``partials/<type id>/<partial id>/<relpath>``."""


def _partial_path(config: Config, f: FieldInfo, owner: Config | None) -> GeneratedPath:
    """A generated path shared by the configs that differ only in ``f.partial``'s params.
    Its relative path, from the workspace, starts with ``@``: :func:`generated_base` finds
    the workspace from the owner's job directory (``<workspace>/jobs/<type id>/<id>``)."""
    from corral.core.identity import partial_digest

    assert f.relpath is not None
    assert f.partial is not None
    if owner is None:
        return GeneratedPath.make(UNSUBMITTED / PARTIALS / f.relpath, f.relpath)
    pid = partial_digest(config, f.partial).hex()
    rel = f"{PARTIALS}/{class_info(type(config)).type_id}/{pid}/{f.relpath}"
    taskdir = owner.__dict__.get("__taskdir__")
    if taskdir is None:
        if owner is not config:
            return GeneratedPath.make(UNSUBMITTED / rel, f.relpath)
        return GeneratedPath.make(UNSUBMITTED / rel, "@" + rel, producer=owner)
    return GeneratedPath.make(generated_base(Path(taskdir), "@" + rel), "@" + rel, producer=owner)


def generated_base(taskdir: Path, relpath: str) -> Path:
    """Where the generated path ``relpath`` of the task whose job directory is ``taskdir``
    is: in the job directory, or (``@...``, a partial path) in its workspace."""
    if relpath.startswith("@"):
        return taskdir.parents[2] / relpath[1:]
    return taskdir / relpath


def _nested(config: Config) -> list[Config]:
    """The configs directly inside ``config``'s fields (and its init tasks), in order."""
    d = config.__dict__
    found = [
        v
        for name in class_info(type(config)).fields
        if name in d
        for v in children(d[name])
        if isinstance(v, Config)
    ]
    found.extend(d.get("_corral_init", ()))
    return found


def children(value: Any) -> Iterator[Any]:
    """The leaf values and configs directly inside a field value (through containers)."""
    if isinstance(value, list | tuple | frozenset | set):
        for v in value:
            yield from children(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from children(v)
    else:
        yield value


def walk(config: Config) -> Iterator[Config]:
    """Every config of the tree rooted at ``config`` (itself first), each once."""
    seen: set[int] = set()
    stack = [config]
    while stack:
        c = stack.pop()
        if id(c) in seen:
            continue
        seen.add(id(c))
        yield c
        stack.extend(reversed(_nested(c)))
