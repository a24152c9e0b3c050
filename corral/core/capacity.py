"""What a host offers a job, and whether a job's resources fit it.

An *offer* maps capacity keys to values: counts (``cpus``, ``gpus``, ``nodes``), sizes in
bytes (``mem``, ``gpu_mem``), a duration in seconds (``time``) and a set of GPU models
(``gpu_type``). It comes from a hosts file's declaration (:func:`parse_offer`) or from the
launcher itself (:meth:`Launcher.capacities <corral.core.launcher.Launcher.capacities>`, e.g.
SLURM's ``sinfo``). ``cpus`` is per node, ``gpus`` and ``mem`` per node too.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from corral.core.units import EXPECTED, parse_count, parse_duration, parse_size

if TYPE_CHECKING:
    from corral.core.job import Resources

Offer = Mapping[str, "float | frozenset[str]"]

KINDS = {
    "cpus": "count",
    "gpus": "count",
    "gpu_type": "names",
    "mem": "size",
    "gpu_mem": "size",
    "time": "duration",
    "nodes": "count",
}
"""Every capacity key and the kind of its value."""
EXPECTED_NAMES = "a GPU model like a100, or a list of them"


def parse_names(value: object) -> frozenset[str]:
    """A set of GPU models from ``"a100"`` or ``["a100", "t4"]``."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list | tuple | set | frozenset) or not items or not all(
        isinstance(i, str) and i.strip() for i in items
    ):
        raise ValueError(EXPECTED_NAMES)
    return frozenset(i.strip() for i in items)


PARSERS: dict[str, Callable[[object], Any]] = {
    "count": parse_count,
    "size": parse_size,
    "duration": parse_duration,
    "names": parse_names,
}


def parse_value(key: str, raw: object) -> float | frozenset[str]:
    """The value of capacity ``key``; ValueError says what is valid."""
    value: float | frozenset[str] = PARSERS[KINDS[key]](raw)
    return value


def expected(key: str) -> str:
    """What a value of capacity ``key`` looks like."""
    kind = KINDS[key]
    return EXPECTED_NAMES if kind == "names" else EXPECTED[kind]


def parse_offer(raw: Mapping[str, Any]) -> dict[str, float | frozenset[str]]:
    """An offer from declared values (``{"gpus": 4, "mem": "512G"}``); ValueError (with the
    key in its ``args[1]``) for a bad one."""
    offer: dict[str, float | frozenset[str]] = {}
    for key, value in raw.items():
        try:
            offer[key] = parse_value(key, value)
        except ValueError as exc:
            raise ValueError(str(exc), key) from None
    return offer


def shortfalls(offer: Offer, resources: Resources) -> list[str]:
    """Why a job with ``resources`` does not fit ``offer`` (empty when it fits). A key the
    offer does not have is not known to fit: it is named too."""
    asked: dict[str, Any] = {
        "cpus": resources.cpus,
        "gpus": resources.gpus,
        "nodes": resources.nodes,
        "mem": parse_size(resources.mem) if resources.mem is not None else None,
        "time": parse_duration(resources.time) if resources.time is not None else None,
    }
    reasons = []
    for key, need in asked.items():
        if need is None or (key in ("gpus",) and need == 0) or (key == "nodes" and need == 1):
            continue
        if key == "cpus" and need == 1 and key not in offer:
            continue  # every host runs a one-CPU job
        have = offer.get(key)
        if have is None:
            reasons.append(f"offers no {key} (the job asks {need:g})")
        elif isinstance(have, float | int) and have < need:
            reasons.append(f"{key} {_show(key, have)} < the {_show(key, need)} the job asks")
    if resources.gpus and resources.gpu_type is not None:
        types = offer.get("gpu_type")
        if not isinstance(types, frozenset) or resources.gpu_type not in types:
            shown = ", ".join(sorted(types)) if isinstance(types, frozenset) else "none declared"
            reasons.append(f"gpu_type {resources.gpu_type!r} not offered ({shown})")
    return reasons


def _show(key: str, value: float) -> str:
    if KINDS[key] == "size":
        return f"{value / 1024**3:g}G"
    if KINDS[key] == "duration":
        return "unlimited" if math.isinf(value) else f"{value:g}s"
    return f"{value:g}"
