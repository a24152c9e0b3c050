"""Comparing a config with a job's ``params.json``: the parameter paths whose values differ,
and which differences enter the identity.

Both sides are in ``params.json`` form (:mod:`corral.core.serialize`). An entry's identity is
recomputed from its stored values with today's classes (:func:`entry_digest` applies the
encoding of :mod:`corral.core.identity` to JSON values); the job's stored identifier then
tells which of its params were left out of it as defaults when it was submitted, so that a
default that changed since is told apart from a value that was set.
"""

from __future__ import annotations

import hashlib
import itertools
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from corral.core.fields import Kind
from corral.core.identity import INIT_TASKS, encode, header_for

if TYPE_CHECKING:
    from corral.core.classinfo import ClassInfo
    from corral.core.config import Config

MAX_FLIPS = 3
"""Params whose default may have changed that the search for a stored identity tries at once."""

_u64 = struct.Struct(">Q").pack


def _lp(data: bytes) -> bytes:
    return _u64(len(data)) + data


@dataclass(frozen=True)
class Tree:
    """A ``params.json`` config tree: its objects, the root's index, and (for a config built
    here) the class of each object."""

    objects: list[dict[str, Any]]
    root: int
    classes: dict[int, type[Config]] = field(default_factory=dict)

    @classmethod
    def of(cls, data: dict[str, Any]) -> Tree:
        """The tree of a ``params.json`` content."""
        return cls(data["objects"], data["root"])


@dataclass(frozen=True)
class Difference:
    """A parameter path whose value (or place in the identity) differs."""

    path: str
    before: str | None
    """The job's value, shown; None when the job has no such param."""
    after: str | None
    """The config's value, shown; None when the class has no such param any more."""
    note: str = ""
    identity: bool = True
    """Whether this difference changes the identity."""

    def __str__(self) -> str:
        if self.before is None:
            text = f"+ {self.path}: {self.after}"
        elif self.after is None:
            text = f"- {self.path}: {self.before}"
        elif self.before == self.after:
            text = f"{self.path}: {self.after}"
        else:
            text = f"{self.path}: {self.before} → {self.after}"
        return text + (f"  ({self.note})" if self.note else "")


# --- identity from stored values ----------------------------------------------------------


def encode_json(value: Any, objects: list[dict[str, Any]]) -> bytes:
    """The identity encoding of a ``params.json`` value (as of the live value it stores)."""
    t = type(value)
    if value is None or t in (bool, int, float, str):
        return encode(value)
    if t is list:
        kept = [v for v in value if not _meta(v, objects)]
        return b"L" + _u64(len(kept)) + b"".join(encode_json(v, objects) for v in kept)
    ((tag, payload),) = value.items()
    if tag == "$config":
        return b"C" + bytes.fromhex(objects[payload]["id"])
    if tag == "$float":
        return encode(float(payload))
    if tag == "$tuple":
        kept = [v for v in payload if not _meta(v, objects)]
        return b"T" + _u64(len(kept)) + b"".join(encode_json(v, objects) for v in kept)
    if tag == "$set":
        encoded = sorted({encode_json(v, objects) for v in payload if not _meta(v, objects)})
        return b"U" + _u64(len(encoded)) + b"".join(encoded)
    if tag == "$dict":
        keys = sorted((k for k, v in payload.items() if not _meta(v, objects)), key=str.encode)
        items = b"".join(_lp(k.encode()) + encode_json(payload[k], objects) for k in keys)
        return b"D" + _u64(len(keys)) + items
    if tag == "$path":
        return encode(PurePosixPath(payload))
    if tag == "$generated":
        producer = bytes.fromhex(objects[payload["producer"]]["id"])
        return b"G" + producer + _lp(PurePosixPath(payload["relpath"]).as_posix().encode())
    if tag == "$enum":
        ref, name = payload
        return b"E" + _lp(f"{ref['module']}.{ref['qualname']}".encode()) + _lp(name.encode())
    raise ValueError(f"params.json: unknown value tag {tag!r}")


def _meta(value: Any, objects: list[dict[str, Any]]) -> bool:
    """Whether a stored value is a config marked with ``setmeta`` (left out of identities)."""
    return type(value) is dict and "$config" in value and bool(
        objects[value["$config"]].get("meta")
    )


def entry_digest(entry: dict[str, Any], objects: list[dict[str, Any]], names: set[str]) -> str:
    """The identifier of a stored config whose identity holds the params ``names``."""
    out = bytearray(header_for(entry["type_id"]))
    producer = entry.get("producer")
    out += b"\x00" if producer is None else b"\x01" + bytes.fromhex(objects[producer]["id"])
    ordered = sorted(names, key=str.encode)
    init = entry.get("init")
    out += _u64(len(ordered) + (1 if init else 0))
    for name in ordered:
        out += _lp(name.encode()) + encode_json(entry["fields"][name], objects)
    if init:
        listed = [{"$config": i} for i in init]
        out += _lp(INIT_TASKS.encode()) + encode_json(listed, objects)
    return hashlib.sha256(out).hexdigest()


def in_identity(entry: dict[str, Any], objects: list[dict[str, Any]], info: ClassInfo) -> set[str]:
    """The params of a stored config that today's class puts in its identity."""
    names = set()
    for f in info.identity_fields:
        if f.name not in entry["fields"]:
            continue
        value = entry["fields"][f.name]
        if _meta(value, objects):
            continue  # a config marked with setmeta
        if (
            f.kind is Kind.PARAM
            and f.has_default
            and encode_json(value, objects) == f.default_encoding()
        ):
            continue
        names.add(f.name)
    return names


def in_stored_identity(
    entry: dict[str, Any], objects: list[dict[str, Any]], info: ClassInfo
) -> set[str] | None:
    """The params that were in a job's identity when it was submitted: today's rule, with
    the fewest params flipped in or out (their default changed since) that gives back the
    stored identifier; None when none does."""
    base = in_identity(entry, objects, info)
    if entry_digest(entry, objects, base) == entry["id"]:
        return base
    names = sorted(entry["fields"])
    for k in range(1, min(MAX_FLIPS, len(names)) + 1):
        for flipped in itertools.combinations(names, k):
            trial = base ^ set(flipped)
            if entry_digest(entry, objects, trial) == entry["id"]:
                return trial
    return None


# --- showing values --------------------------------------------------------------------------


def _qualname(entry: dict[str, Any]) -> str:
    return str(entry["class"]["qualname"])


def show(value: Any, objects: list[dict[str, Any]], limit: int = 80) -> str:
    """A short, Python-like text of a ``params.json`` value."""
    text = _show(value, objects)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _show(value: Any, objects: list[dict[str, Any]]) -> str:
    if type(value) is list:
        return "[" + ", ".join(_show(v, objects) for v in value) + "]"
    if type(value) is not dict:
        return repr(value)
    ((tag, payload),) = value.items()
    if tag == "$config":
        return f"{_qualname(objects[payload])}(…)"
    if tag == "$tuple":
        inner = ", ".join(_show(v, objects) for v in payload)
        return f"({inner},)" if len(payload) == 1 else f"({inner})"
    if tag == "$set":
        return "{" + ", ".join(_show(v, objects) for v in payload) + "}" if payload else "set()"
    if tag == "$dict":
        return "{" + ", ".join(f"{k!r}: {_show(v, objects)}" for k, v in payload.items()) + "}"
    if tag == "$path":
        return str(payload)
    if tag == "$float":
        return str(payload)
    if tag == "$generated":
        producer = objects[payload["producer"]]
        return f"{payload['relpath']} of {_qualname(producer)}/{producer['id'][:12]}"
    if tag == "$enum":
        return f"{payload[0]['qualname']}.{payload[1]}"
    return repr(value)


# --- comparing two trees -----------------------------------------------------------------


def _is_config(v: Any) -> bool:
    return type(v) is dict and "$config" in v


def _items(v: Any) -> list[tuple[str, Any]] | None:
    """The items of a container holding configs, with their path suffixes; None otherwise."""
    if type(v) is list:
        seq: Any = v
    elif type(v) is dict and "$tuple" in v:
        seq = v["$tuple"]
    elif type(v) is dict and "$dict" in v:
        found = [(f"[{k!r}]", x) for k, x in v["$dict"].items()]
        return found if any(_holds_config(x) for _, x in found) else None
    else:
        return None
    found = [(f"[{i}]", x) for i, x in enumerate(seq)]
    return found if any(_holds_config(x) for _, x in found) else None


def _holds_config(v: Any) -> bool:
    return _is_config(v) or _items(v) is not None


class Comparison:
    """The differences between a job's tree (``old``) and a config's (``new``, whose classes
    are known). With ``analyze``, each stored identity is explained (which params were left
    out as defaults); without, values alone are compared (enough to rank jobs)."""

    def __init__(self, old: Tree, new: Tree, *, analyze: bool = True) -> None:
        self.old = old
        self.new = new
        self.analyze = analyze
        self.differences: list[Difference] = []
        self.unexplained: list[str] = []
        """Paths of configs whose stored identity today's classes cannot give back."""
        self._seen: set[tuple[int, int]] = set()
        self.config("", old.root, new.root)

    def _add(self, *args: Any, **kwargs: Any) -> None:
        self.differences.append(Difference(*args, **kwargs))

    def config(self, path: str, oi: int, ni: int) -> None:
        """Compare the stored config ``oi`` with the new config ``ni`` at ``path``."""
        o, n = self.old.objects[oi], self.new.objects[ni]
        if o["type_id"] != n["type_id"]:
            self._add(path or "(task)", _qualname(o), _qualname(n), "another class")
            return
        if (oi, ni) in self._seen:
            return
        self._seen.add((oi, ni))
        from corral.core.classinfo import class_info

        info = class_info(self.new.classes[ni])
        now = in_identity(n, self.new.objects, info)
        then = in_stored_identity(o, self.old.objects, info) if self.analyze else None
        if then is None:
            if self.analyze:
                self.unexplained.append(path or "(task)")
            then = in_identity(o, self.old.objects, info)
        order = [*info.fields, *sorted(set(o["fields"]) - set(info.fields))]
        for name in order:
            if name in o["fields"] or name in n["fields"]:
                self.param(f"{path}.{name}" if path else name, name, o, n, info, then, now)

    def param(
        self,
        path: str,
        name: str,
        o: dict[str, Any],
        n: dict[str, Any],
        info: ClassInfo,
        then: set[str],
        now: set[str],
    ) -> None:
        """Compare one param of two configs of the same class."""
        oo, no = self.old.objects, self.new.objects
        f = info.fields.get(name)
        if name not in o["fields"]:
            meta = f is not None and f.kind is Kind.META
            note = "new meta param: not in the identity" if meta else "new param" + (
                "" if name in now else ", at its default: not in the identity"
            )
            self._add(path, None, show(n["fields"][name], no), note, name in now)
            return
        if name not in n["fields"]:
            self._add(path, show(o["fields"][name], oo), None, "param removed", name in then)
            return
        ov, nv = o["fields"][name], n["fields"][name]
        same = encode_json(ov, oo) == encode_json(nv, no)
        if name in then and name not in now:
            self._add(path, show(ov, oo), show(nv, no),
                      "now the default: left out of the identity" if same else "")
        elif name in now and name not in then:
            self._add(path, show(ov, oo), show(nv, no),
                      "no longer the default: now in the identity" if same else "")
        elif self.nested(path, ov, nv):
            return
        elif not same and name not in now:
            note = ("meta: not in the identity" if f is not None and f.kind is Kind.META
                    else "its default changed; left at its default, so not in the identity")
            self._add(path, show(ov, oo), show(nv, no), note, False)
        elif not same:
            self._add(path, show(ov, oo), show(nv, no))

    def nested(self, path: str, ov: Any, nv: Any) -> bool:
        """Compare inside two values holding configs; False when they are not such values."""
        if _is_config(ov) and _is_config(nv):
            self.config(path, ov["$config"], nv["$config"])
            return True
        old_items, new_items = _items(ov), _items(nv)
        if old_items is None or new_items is None or len(old_items) != len(new_items):
            return False
        if [k for k, _ in old_items] != [k for k, _ in new_items]:
            return False
        oo, no = self.old.objects, self.new.objects
        for (key, a), (_, b) in zip(old_items, new_items, strict=True):
            if not self.nested(path + key, a, b) and encode_json(a, oo) != encode_json(b, no):
                self._add(path + key, show(a, oo), show(b, no))
        return True

    @property
    def distance(self) -> int:
        """How many values differ (ranks jobs: the smallest is the closest)."""
        return len(self.differences)

    def __iter__(self) -> Iterator[Difference]:
        return iter(self.differences)
