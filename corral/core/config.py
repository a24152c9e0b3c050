"""``Config``: typed, keyword-only, sealable configuration objects declared by annotations."""

from __future__ import annotations

import copy
import itertools
import re
import sys
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from corral.core.fields import (
    _MISSING,
    FieldSpec,
    Kind,
    Tagged,
    _KindMarker,
    pathgenerator,
)
from corral.core.frozen import FrozenDict, FrozenList, freeze
from corral.core.paths import UNSUBMITTED, GeneratedPath, qualified_name
from corral.core.validation import SUPPORTED, Mismatch, UnsupportedType, describe, given
from corral.errors import ConfigError

if TYPE_CHECKING:
    from corral.core.validation import Validator

_ID_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")


class FieldInfo:
    """One declared field of a config class."""

    __slots__ = (
        "_default_encoding",
        "_help",
        "annotation",
        "default",
        "default_factory",
        "group",
        "kind",
        "name",
        "owner",
        "partial",
        "relpath",
        "validate",
    )

    def __init__(
        self,
        name: str,
        kind: Kind,
        annotation: Any,
        validate: Validator,
        owner: type[Config],
        *,
        default: Any = _MISSING,
        default_factory: Any = None,
        relpath: str | None = None,
        help: str | None = None,
        group: str | None = None,
    ) -> None:
        self.name = name
        self.kind = kind
        self.annotation = annotation
        self.validate = validate
        self.owner = owner
        self.default = default
        self.default_factory = default_factory
        self.relpath = relpath
        self._help = help
        self._default_encoding: bytes | None = None
        self.group = group
        self.partial: frozenset[str] | None = None
        """For a generated path with ``partial=``: the names of the params it leaves out."""

    @property
    def has_default(self) -> bool:
        """Whether the field can be omitted at construction."""
        return self.default is not _MISSING or self.default_factory is not None

    @property
    def required(self) -> bool:
        """Whether a value must be given (generated fields never are)."""
        return self.kind is not Kind.GENERATED and not self.has_default

    def make_default(self) -> Any:
        """A fresh default value (containers are copied, factories called)."""
        if self.default_factory is not None:
            return self.validate(self.default_factory())
        if isinstance(self.default, list | dict | set):
            return copy.deepcopy(self.default)
        return self.default

    def default_encoding(self) -> bytes:
        """The canonical encoding of the default, to leave defaults out of the identity."""
        if self._default_encoding is None:
            from corral.core.identity import encode

            self._default_encoding = encode(self.make_default())
        return self._default_encoding

    @property
    def help(self) -> str | None:
        """Help text: ``field(help=...)`` or the docstring written under the declaration."""
        if self._help is None:
            self._help = _docstrings(self.owner).get(self.name, "")
        return self._help or None

    def __repr__(self) -> str:
        kind, tp = self.kind.value, describe(self.annotation)
        return f"<field {self.owner.__name__}.{self.name}: {kind} {tp}>"


class ClassInfo:
    """Everything derived once per config class: fields, type id, identity order."""

    __slots__ = (
        "_header",
        "_type_id",
        "cls",
        "defaults",
        "fields",
        "generated",
        "identity_fields",
        "value_fields",
    )

    def __init__(self, cls: type[Config], fields: dict[str, FieldInfo]) -> None:
        self.cls = cls
        self.fields = fields
        self._type_id: str | None = cls.__dict__.get("__corral_id__")
        self._header: bytes | None = None
        self.defaults = [
            f for f in fields.values() if f.has_default and f.kind is not Kind.GENERATED
        ]
        self.generated = {n: f for n, f in fields.items() if f.kind is Kind.GENERATED}
        self.value_fields = [n for n, f in fields.items() if f.kind is not Kind.GENERATED]
        self.identity_fields = sorted(
            (f for f in fields.values() if f.kind in (Kind.PARAM, Kind.CONSTANT)),
            key=lambda f: f.name.encode(),
        )

    @property
    def type_id(self) -> str:
        """``module.QualName`` or the explicit id; computed on first use, so that a class of
        an interactive session can be declared and built (only its identity needs a module)."""
        if self._type_id is None:
            self._type_id = qualified_name(self.cls)
        return self._type_id

    @property
    def header(self) -> bytes:
        """The fixed prefix of the digest input (see :func:`corral.core.identity.header_for`)."""
        if self._header is None:
            from corral.core.identity import header_for

            self._header = header_for(self.type_id)
        return self._header


def _split_annotation(hint: Any) -> tuple[Any, Kind | None, pathgenerator | None]:
    """(inner type, kind, pathgenerator) of an annotation; kind None = not a field."""
    if typing.get_origin(hint) is not typing.Annotated:
        return hint, None, None
    inner, *extras = typing.get_args(hint)
    kind: Kind | None = None
    generator: pathgenerator | None = None
    for extra in extras:
        if isinstance(extra, _KindMarker):
            kind = extra.kind
        elif isinstance(extra, pathgenerator):
            generator = extra
    if typing.get_origin(inner) is typing.Annotated:  # Param[Annotated[...]] nests
        inner2, kind2, gen2 = _split_annotation(inner)
        return inner2, kind or kind2, generator or gen2
    if generator is not None:
        return inner, Kind.GENERATED, generator
    return inner, kind, None


def _collect_fields(cls: type[Config]) -> dict[str, FieldInfo]:
    from corral.core.validation import validator_for

    try:
        localns = cls.__dict__.get("_corral_localns")
        hints = typing.get_type_hints(cls, localns=localns, include_extras=True)
    except NameError:
        raise
    except Exception as exc:
        raise ConfigError(f"{cls.__qualname__}: cannot read annotations: {exc}") from exc
    fields: dict[str, FieldInfo] = {}
    partials: dict[str, Any] = {}
    for name, hint in hints.items():
        if name.startswith("_") or typing.get_origin(hint) is ClassVar:
            continue
        inner, kind, generator = _split_annotation(hint)
        if kind is None:
            continue  # a plain annotation is an ordinary attribute, not a field
        owner = next(c for c in cls.__mro__ if name in vars(c).get("__annotations__", {}))
        where = f"{cls.__qualname__}.{name}"
        if name in _reserved():
            raise ConfigError(
                f"{where}: {name!r} is the name of a method every config has; rename the field"
            )
        if kind is Kind.GENERATED:
            assert generator is not None
            if name in cls.__dict__ and not callable(cls.__dict__[name]):
                raise ConfigError(f"{where}: a pathgenerator field takes no default")
            fields[name] = FieldInfo(
                name, kind, Path, lambda v: v, owner, relpath=generator.relpath
            )
            if generator.partial is not None:
                partials[name] = generator.partial
            continue
        try:
            validate = validator_for(inner)
        except UnsupportedType as exc:
            raise ConfigError(f"{where}: unsupported type {exc}; supported: {SUPPORTED}") from None
        raw = getattr(cls, name, _MISSING)
        spec = raw if isinstance(raw, FieldSpec) else FieldSpec(default=raw)
        info = FieldInfo(
            name,
            kind,
            inner,
            validate,
            owner,
            default=spec.default,
            default_factory=spec.default_factory,
            help=spec.help,
            group=spec.group,
        )
        if owner is cls:
            _check_override(cls, info, spec.overrides)
        if not info.has_default and _accepts_none(inner) and kind is not Kind.CONSTANT:
            info.default = None  # Optional[...] without a default defaults to None
        if info.default is not _MISSING:
            try:
                info.default = validate(info.default)
            except Mismatch as exc:
                inside = f" (at {name}{exc.where}: {given(exc.value)})" if exc.where else ""
                raise ConfigError(
                    f"{where}: default {info.default!r}: expected {describe(inner)}, "
                    f"got {given(info.default)}{inside}"
                ) from None
        if kind is Kind.CONSTANT and info.default is _MISSING:
            raise ConfigError(f"{where}: a Constant needs a value")
        fields[name] = info
    for name, part in partials.items():
        fields[name].partial = _excluded(cls, fields, name, part.exclude)
    return fields


_RESERVED: frozenset[str] | None = None


def _reserved() -> frozenset[str]:
    """The public attributes of corral's own config classes, which no field may shadow."""
    global _RESERVED
    if _RESERVED is None:
        from corral.core.resumable import ResumableTask
        from corral.core.task import Task

        _RESERVED = frozenset(
            n for c in (Config, Task, ResumableTask) for n in vars(c) if not n.startswith("_")
        )
    return _RESERVED


def _check_override(cls: type[Config], info: FieldInfo, overrides: bool) -> None:
    """A field redeclared in a subclass keeps its kind, and changes its type only with
    ``field(overrides=True)`` and to a narrower one."""
    from corral.core.validation import narrower

    where = f"{cls.__qualname__}.{info.name}"
    base = next(
        (
            class_info(b).fields[info.name]
            for b in cls.__mro__[1:]
            if isinstance(b, type) and issubclass(b, Config) and b is not Config
            and info.name in class_info(b).fields
        ),
        None,
    )
    if base is None:
        if overrides:
            raise ConfigError(
                f"{where}: field(overrides=True), but no base class has {info.name!r}"
            )
        return
    parent = f"{base.owner.__qualname__}.{info.name}"
    if base.kind is not info.kind:
        raise ConfigError(
            f"{where}: {parent} is a {base.kind.value}, a subclass cannot make it a "
            f"{info.kind.value} (that would change identities silently)"
        )
    if base.annotation == info.annotation:
        return
    old, new = describe(base.annotation), describe(info.annotation)
    if not overrides:
        raise ConfigError(
            f"{where}: redeclares {parent} as {new} (was {old}); write "
            "`= field(overrides=True)` (with the default, if any) when that is meant"
        )
    if not narrower(info.annotation, base.annotation):
        raise ConfigError(
            f"{where}: overrides {parent} with {new}, which is not narrower than {old}: "
            "every value of the subclass must be valid for the base class"
        )


def _excluded(
    cls: type[Config], fields: dict[str, FieldInfo], name: str, exclude: tuple[str, ...]
) -> frozenset[str]:
    """The params a partial path of ``name`` leaves out: field names and groups resolved."""
    from corral.errors import did_you_mean

    params = {n: f for n, f in fields.items() if f.kind is Kind.PARAM}
    groups = {f.group for f in params.values() if f.group}
    out: set[str] = set()
    for item in exclude:
        if item in params:
            out.add(item)
        elif item in groups:
            out.update(n for n, f in params.items() if f.group == item)
        else:
            valid = sorted(set(params) | groups)
            raise ConfigError(
                f"{cls.__qualname__}.{name}: partial(exclude=...) names {item!r}, which is no "
                f"param or group{did_you_mean(item, valid)}; valid: {', '.join(valid) or '(none)'}"
            )
    return frozenset(out)


def _accepts_none(tp: Any) -> bool:
    return tp is None or tp is type(None) or type(None) in typing.get_args(tp)


def class_info(cls: type[Config]) -> ClassInfo:
    """The (cached) :class:`ClassInfo` of a config class."""
    info = cls.__dict__.get("_corral_info")
    if info is None:
        try:
            fields = _collect_fields(cls)
        except NameError as exc:
            raise ConfigError(f"{cls.__qualname__}: unresolved annotation: {exc}") from exc
        info = ClassInfo(cls, fields)
        type.__setattr__(cls, "_corral_info", info)
    return info


def fields(config_or_class: Config | type[Config]) -> Mapping[str, FieldInfo]:
    """The declared fields of a config class (or of a config's class), by name."""
    cls = config_or_class if isinstance(config_or_class, type) else type(config_or_class)
    return class_info(cls).fields


def _docstrings(cls: type[Any]) -> dict[str, str]:
    """Docstrings written under field declarations in the class body."""
    import ast  # only when help text is asked for: job processes never pay for it
    import inspect
    import textwrap

    try:
        source = textwrap.dedent(inspect.getsource(cls))
        tree = ast.parse(source)
    except (OSError, TypeError, SyntaxError):
        return {}
    body = next((n.body for n in tree.body if isinstance(n, ast.ClassDef)), [])
    docs: dict[str, str] = {}
    for node, after in itertools.pairwise(body):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            docs[node.target.id] = inspect.cleandoc(after.value.value)
    return docs


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
