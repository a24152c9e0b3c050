"""Content-hashed identity of configs: a canonical encoding fed to SHA-256.

The encoding is specified in ``docs/identity.md`` and pinned by golden vectors in
``tests/data/identity_vectors.json``. Changing any of it changes identifiers, which makes
every finished job look new: that is a deliberate :data:`HASH_VERSION` bump, never a side
effect.
"""

from __future__ import annotations

import enum
import math
import struct
from pathlib import PurePath, PurePosixPath
from typing import TYPE_CHECKING, Any

from corral.core.fields import Kind
from corral.core.frozen import FrozenDict, FrozenList
from corral.core.paths import UNSUBMITTED, GeneratedPath, qualified_name
from corral.errors import ConfigError

if TYPE_CHECKING:
    from corral.core.config import Config

HASH_VERSION = 1
"""Version of the encoding; bump it (and the golden vectors) on any change."""

MAGIC = b"corral-config\x00"
PARTIAL_MAGIC = b"corral-partial\x00"
INIT_TASKS = "__init_tasks__"
"""The name the init tasks of a submission are listed under (no field name starts with _)."""

_u64 = struct.Struct(">Q").pack
_f64 = struct.Struct(">d").pack
_CANONICAL_NAN = b"\x7f\xf8\x00\x00\x00\x00\x00\x00"
_IN_PROGRESS = b""


class _Unencodable(ConfigError):
    """A value the identity cannot encode; :func:`digest` adds the field it is in."""


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _lp(data: bytes) -> bytes:
    """Length-prefixed bytes: 8-byte big-endian length, then the bytes."""
    return _u64(len(data)) + data


def header_for(type_id: str) -> bytes:
    """The fixed prefix of every digest input of a class with this type id."""
    return MAGIC + _u64(HASH_VERSION) + _lp(type_id.encode())


def _float(v: float) -> bytes:
    if math.isnan(v):
        return b"F" + _CANONICAL_NAN
    return b"F" + _f64(v + 0.0)  # + 0.0 turns -0.0 into 0.0: equal values encode equally


def _encode_into(value: Any, out: bytearray) -> None:
    t = type(value)
    if t is str:
        out += b"S" + _lp(value.encode())
    elif t is int:
        out += b"I" + _lp(str(value).encode())
    elif t is float:
        out += _float(value)
    elif t is bool:
        out += b"B\x01" if value else b"B\x00"
    elif value is None:
        out += b"N"
    elif t is list or t is tuple or t is FrozenList:
        kept = [v for v in value if not _is_meta_config(v)]
        out += (b"T" if t is tuple else b"L") + _u64(len(kept))
        for v in kept:
            _encode_into(v, out)
    elif t is frozenset or t is set:
        items = sorted({encode(v) for v in value if not _is_meta_config(v)})
        out += b"U" + _u64(len(items)) + b"".join(items)  # order-free; equal items count once
    elif t is dict or t is FrozenDict:
        keys = sorted(
            (k for k, v in value.items() if not _is_meta_config(v)),
            key=lambda k: k.encode() if isinstance(k, str) else b"",
        )
        out += b"D" + _u64(len(keys))
        for k in keys:
            if not isinstance(k, str):
                raise _Unencodable(f"cannot hash dict key {_short(k)}: keys must be str")
            out += _lp(k.encode())
            _encode_into(value[k], out)
    else:
        _encode_other(value, out)


def _encode_other(value: Any, out: bytearray) -> None:
    from corral.core.config import Config

    if isinstance(value, Config):
        out += b"C" + digest(value)
    elif isinstance(value, GeneratedPath) and value.has_provenance:
        if value.producer is not None:
            producer = digest(value.producer)
        else:
            assert value.producer_id is not None
            producer = bytes.fromhex(value.producer_id)
        out += b"G" + producer + _lp(PurePosixPath(value.relpath).as_posix().encode())
    elif isinstance(value, PurePath):
        if value.parts[:1] == (UNSUBMITTED.name,):
            raise _Unencodable(
                f"{str(value)!r} is a generated path of a config whose task was not "
                "submitted yet: submit that task first, then build this config"
            )
        out += b"P" + _lp(PurePosixPath(value.as_posix()).as_posix().encode())
    elif isinstance(value, enum.Enum):
        out += b"E" + _lp(qualified_name(type(value)).encode()) + _lp(value.name.encode())
    elif isinstance(value, bool):
        _encode_into(bool(value), out)
    elif isinstance(value, int):
        _encode_into(int(value), out)
    elif isinstance(value, float):
        out += _float(float(value))
    elif isinstance(value, str):
        _encode_into(str(value), out)
    else:
        raise _Unencodable(f"cannot hash a value of type {type(value).__name__}: {_short(value)}")


def encode(value: Any) -> bytes:
    """The canonical encoding of one param value."""
    out = bytearray()
    _encode_into(value, out)
    return bytes(out)


class _Cycle(ConfigError):
    """A config reached again while its digest is computed; unwinding names the path."""

    def __init__(self, start: Config) -> None:
        super().__init__("cycle")
        self.start = start
        self.path: list[str] = []


def digest(config: Config) -> bytes:
    """The 32-byte SHA-256 digest of a config; computing it seals the config (and its tree)."""
    from corral.core.config import seal

    d = config.__dict__
    cached: bytes | None = d.get("_corral_digest")
    if cached is not None:
        if cached is _IN_PROGRESS:
            raise _Cycle(config)
        return cached
    from hashlib import sha256  # here: a job process rebuilding configs never hashes

    d["_corral_digest"] = _IN_PROGRESS
    try:
        result = sha256(_digest_input(config)).digest()
    except _Cycle as cycle:
        d["_corral_digest"] = None
        if cycle.start is not config:
            raise
        raise ConfigError(
            f"the config tree contains a cycle: {' → '.join(cycle.path)} → "
            f"{type(config).__name__} "
            "(an identity is a hash of the values inside a config, which a cycle never ends)"
        ) from None
    except BaseException:
        d["_corral_digest"] = None
        raise
    d["_corral_digest"] = result
    seal(config)
    return result


def _digest_input(config: Config, exclude: frozenset[str] = frozenset()) -> bytes:
    from corral.core.classinfo import class_info

    d = config.__dict__
    info = class_info(type(config))
    missing = [n for n, f in info.fields.items() if f.required and n not in d]
    if missing:
        names = ", ".join(repr(n) for n in missing)
        raise ConfigError(f"{type(config).__qualname__}: missing required param(s) {names}")
    if exclude:
        out = bytearray(PARTIAL_MAGIC + _u64(HASH_VERSION) + _lp(info.type_id.encode()))
        out += _u64(len(exclude)) + b"".join(_lp(n.encode()) for n in sorted(exclude))
    else:
        out = bytearray(info.header)
    producer = d.get("_corral_producer")
    if producer is None or producer is config:
        out += b"\x00"
    else:
        out += b"\x01" + digest(producer)
    items = bytearray()
    count = 0
    for f in info.identity_fields:
        value = d[f.name]
        if f.name in exclude or _is_meta_config(value):
            continue
        encoded = _field_encoding(config, f.name, value)
        if f.kind is Kind.PARAM and f.has_default and encoded == f.default_encoding():
            continue
        items += _lp(f.name.encode()) + encoded
        count += 1
    init = d.get("_corral_init")
    if init:  # init tasks run before the task: what it computes depends on them
        items += _lp(INIT_TASKS.encode()) + _field_encoding(config, INIT_TASKS, list(init))
        count += 1
    out += _u64(count) + items
    return bytes(out)


def _is_meta_config(value: Any) -> bool:
    from corral.core.config import Config

    return isinstance(value, Config) and bool(value.__dict__.get("_corral_meta"))


def _field_encoding(config: Config, name: str, value: Any) -> bytes:
    try:
        return encode(value)
    except _Cycle as cycle:
        cycle.path.insert(0, f"{type(config).__name__}.{name}")
        raise
    except _Unencodable as exc:
        raise ConfigError(f"{type(config).__qualname__}.{name}: {exc}") from None
    except UnicodeEncodeError as exc:
        raise ConfigError(
            f"{type(config).__qualname__}.{name}: {_short(exc.object)} is not valid "
            f"Unicode: a lone surrogate at index {exc.start} (from a file name that "
            "is not UTF-8?)"
        ) from None


def partial_identifier(config: Config, exclude: list[str] | tuple[str, ...]) -> str:
    """The identity of ``config`` without the params ``exclude`` names (field names or
    ``field(group=...)`` groups): 64 hex characters, shared by every config of the class
    that differs only in those params. Seals the config."""
    from corral.core.classinfo import class_info, resolve_exclude
    from corral.core.config import Config

    if not isinstance(config, Config):
        raise ConfigError(f"partial_identifier() takes a Config, got {type(config).__name__}")
    fields = dict(class_info(type(config)).fields)
    names = resolve_exclude(type(config), fields, "partial", tuple(exclude))
    return partial_digest(config, names).hex()


def partial_digest(config: Config, exclude: frozenset[str]) -> bytes:
    """The digest of :func:`partial_identifier`, for resolved param names."""
    from hashlib import sha256

    digest(config)  # the whole tree checked and sealed first
    return sha256(_digest_input(config, exclude)).digest()


def identifier(config: Config) -> str:
    """The identity of a config: 64 lowercase hex characters. Seals the config."""
    from corral.core.config import Config

    if not isinstance(config, Config):
        raise ConfigError(f"identifier() takes a Config, got {type(config).__name__}")
    return digest(config).hex()


def type_id(config_or_class: Config | type[Config]) -> str:
    """The type id of a config class: ``module.QualName`` or its explicit ``id=``."""
    from corral.core.classinfo import class_info

    cls = config_or_class if isinstance(config_or_class, type) else type(config_or_class)
    return class_info(cls).type_id
