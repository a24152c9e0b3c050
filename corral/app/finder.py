"""Pick a host by its declared capacities: ``find_launcher("cpus=4 & gpus=1 & time<=2h")``.

A query describes the **job**: terms ``KEY OP VALUE`` joined by ``&``, each bounding what the
job needs. A host fits a term when what it declares (see :mod:`corral.app.hosts`) can give a job
that need: ``cpus=4`` and ``cpus>=4`` want at least 4 CPUs, ``gpu_mem>=24G`` GPUs with at
least 24G, ``time<=2h`` a time limit that lets a job of up to two hours finish (the host
declares ``time`` of 2h or more); ``>`` wants strictly more. A host that does not declare a
key fails a term on it. The first host that fits every term wins, in the order of
:class:`~corral.app.hosts.HostsConfig`.

Values: counts (``cpus``, ``gpus``); sizes (``mem``, ``gpu_mem``: ``512M``, ``24G``, ``1.5T``,
a bare number in megabytes as SLURM reads it); durations (``time``: ``90m``, ``2h``,
``1h30m``, ``1d``, or SLURM's ``MM``, ``MM:SS``, ``HH:MM:SS``, ``D-HH``, ``D-HH:MM:SS``, a bare
number in minutes; ``unlimited``).
"""

from __future__ import annotations

import operator
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from corral.app.hosts import HostsConfig, HostSpec, load_hosts
from corral.core.capacity import KINDS, parse_value
from corral.errors import ConfigError

OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq,
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
}
# What the host's declared value must be, for a job needing ``OP value``.
FITS: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.ge,
    ">=": operator.ge,
    "<=": operator.ge,
    "<": operator.ge,
    ">": operator.gt,
}
SYNTAX = (
    "expected terms KEY OP VALUE joined by '&', e.g. 'cpus>=4 & gpu_mem>=24G & time>=2h'; "
    f"keys: {', '.join(KINDS)}; operators: {', '.join(OPERATORS)}"
)

_TERM = re.compile(r"^\s*([A-Za-z_]\w*)\s*(>=|<=|=|>|<)\s*([^\s<>=&]+)\s*$")
@dataclass(frozen=True)
class Term:
    """One ``KEY OP VALUE`` of a query."""

    key: str
    op: str
    value: Any
    """A number (count, bytes, seconds), or a name (``gpu_type``)."""
    text: str
    """The value as written."""

    def __str__(self) -> str:
        return f"{self.key}{self.op}{self.text}"


def parse_query(query: str) -> list[Term]:
    """The terms of ``query``; a malformed query is a one-line ConfigError."""
    if not isinstance(query, str) or not query.strip():
        raise ConfigError(f"empty launcher query; {SYNTAX}")
    terms = []
    for part in query.split("&"):
        found = _TERM.match(part)
        if found is None:
            raise ConfigError(f"launcher query {query!r}: cannot read {part.strip()!r}; {SYNTAX}")
        key, op, text = found.groups()
        kind = KINDS.get(key)
        if kind is None:
            raise ConfigError(
                f"launcher query {query!r}: unknown key {key!r}; valid: {', '.join(KINDS)}"
            )
        if kind == "names":
            if op != "=":
                raise ConfigError(
                    f"launcher query {query!r}: {key}{op}{text}: a {key} is matched with '=' only"
                )
            terms.append(Term(key, op, text, text))
            continue
        try:
            value = parse_value(key, text)
        except ValueError as exc:
            raise ConfigError(f"launcher query {query!r}: {key} {text!r}: expected {exc}") from None
        terms.append(Term(key, op, value, text))
    return terms


def declared(spec: HostSpec) -> dict[str, tuple[Any, str]]:
    """A host's declared capacities: ``{key: (value, as written)}``."""
    result = {}
    for key, raw in spec.capacity.items():
        try:
            value = parse_value(key, raw)
        except ValueError as exc:
            raise ConfigError(
                f"{spec.capacity_where(key)}: host {spec.name!r}: {key} {raw!r}: expected {exc}"
            ) from None
        result[key] = (value, str(raw))
    return result


@dataclass(frozen=True)
class HostMatch:
    """Whether a host satisfies a query, and why not."""

    name: str
    launcher: str
    where: str
    """``path:line`` of the host's table."""
    reasons: tuple[str, ...]
    """One per failed term; empty when the host matches."""

    @property
    def matches(self) -> bool:
        """Whether every term holds."""
        return not self.reasons


def match(spec: HostSpec, terms: list[Term]) -> HostMatch:
    """How ``spec`` fares against ``terms``."""
    have = declared(spec)
    reasons = []
    for term in terms:
        if term.key not in have:
            reasons.append(f"declares no {term.key}")
            continue
        value, text = have[term.key]
        if KINDS[term.key] == "names":
            if term.value not in value:
                reasons.append(f"{term.key} = {text}; the job needs {term.text}")
            continue
        if not FITS[term.op](value, term.value):
            wanted = f"more than {term.text}" if term.op == ">" else f"{term.text} or more"
            reasons.append(f"{term.key} = {text}; the job needs {wanted}")
    return HostMatch(spec.name, spec.launcher, spec.where(), tuple(reasons))


def match_hosts(
    query: str,
    *,
    workspace: str | os.PathLike[str] | None = None,
    hosts: HostsConfig | None = None,
) -> list[HostMatch]:
    """Every declared host, in order, with whether it matches ``query`` and why not."""
    terms = parse_query(query)
    config = hosts if hosts is not None else load_hosts(workspace)
    return [match(spec, terms) for spec in config]


def find_host(
    query: str,
    *,
    workspace: str | os.PathLike[str] | None = None,
    hosts: HostsConfig | None = None,
) -> str:
    """The name of the first host matching ``query``; ConfigError says why each host fails."""
    config = hosts if hosts is not None else load_hosts(workspace)
    results = match_hosts(query, hosts=config)
    for result in results:
        if result.matches:
            return result.name
    if not results:
        raise ConfigError(
            f"no host matches {query!r}: no host is declared (looked in {config.describe_search()})"
        )
    why = "; ".join(f"{r.name}: {', '.join(r.reasons)}" for r in results)
    raise ConfigError(f"no host matches {query!r}: {why}")
