"""What a config class declares: its fields (:class:`FieldInfo`) and everything derived once
per class (:class:`ClassInfo`), read from its annotations."""

from __future__ import annotations

import copy
import itertools
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from corral.core.fields import (
    _MISSING,
    FieldSpec,
    Kind,
    _KindMarker,
    pathgenerator,
)
from corral.core.paths import qualified_name
from corral.core.validation import SUPPORTED, Mismatch, UnsupportedType, describe, given
from corral.errors import ConfigError

if TYPE_CHECKING:
    from corral.core.config import Config
    from corral.core.validation import Validator


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
        fields[name].partial = resolve_exclude(cls, fields, name, part.exclude)
    return fields


_RESERVED: frozenset[str] | None = None


def _reserved() -> frozenset[str]:
    """The public attributes of corral's own config classes, which no field may shadow."""
    global _RESERVED
    if _RESERVED is None:
        from corral.core.config import Config
        from corral.core.resumable import ResumableTask
        from corral.core.task import Task

        _RESERVED = frozenset(
            n for c in (Config, Task, ResumableTask) for n in vars(c) if not n.startswith("_")
        )
    return _RESERVED


def _check_override(cls: type[Config], info: FieldInfo, overrides: bool) -> None:
    """A field redeclared in a subclass keeps its kind, and changes its type only with
    ``field(overrides=True)`` and to a narrower one."""
    from corral.core.config import Config
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


def resolve_exclude(
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
