"""Counts, sizes and durations as people and SLURM write them, parsed by pure functions.

Sizes are 1024-based (``512M``, ``24G``, ``1.5T``, an optional ``B``/``iB``; a bare number is
megabytes, as SLURM reads it). Durations are ``90m``, ``2h``, ``1h30m``, ``1d``, ``45s``, or
SLURM's ``MM``, ``MM:SS``, ``HH:MM:SS``, ``D-HH``, ``D-HH:MM``, ``D-HH:MM:SS`` (a bare number is
minutes), or ``unlimited``. Each parser raises ValueError whose message says what is valid.
"""

from __future__ import annotations

import math
import re

EXPECTED = {
    "count": "a whole number >= 0",
    "size": "a size like 512M, 24G or 1.5T (K, M, G, T; a bare number is megabytes)",
    "duration": "a duration like 90m, 2h, 1h30m, 1d, 1-12:00:00 or HH:MM:SS "
    "(a bare number is minutes), or 'unlimited'",
}
_SLURM_TIME = re.compile(r"^(\d+-)?\d+(:\d{1,2}){0,2}$|^\d+$")
_SLURM_MEM = re.compile(r"^\d+[KMGT]?$")
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*(?:([KMGT])(?:I?B)?)?$")
_UNITS = re.compile(r"^(?:\d+(?:\.\d+)?[DHMS])+$")
_DAYS = re.compile(r"^(\d+)-(\d+)(?::(\d{1,2}))?(?::(\d{1,2}))?$")  # D-H[:M[:S]]
_CLOCK = re.compile(r"^\d+(?::\d{1,2}){0,2}$")  # M, M:S, H:M:S
_SECONDS = {"D": 86400, "H": 3600, "M": 60, "S": 1}


def parse_count(value: object) -> int:
    """A CPU or GPU count; ValueError names what is valid."""
    if isinstance(value, bool):
        raise ValueError(EXPECTED["count"])
    if isinstance(value, int) and value >= 0:
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    raise ValueError(EXPECTED["count"])


def parse_size(value: object) -> float:
    """A size in bytes (1024-based units, as SLURM's); ValueError names what is valid."""
    if isinstance(value, bool):
        raise ValueError(EXPECTED["size"])
    if isinstance(value, int | float) and value >= 0:
        return float(value) * 1024**2
    found = _SIZE.match(value.strip().upper()) if isinstance(value, str) else None
    if found is None:
        raise ValueError(EXPECTED["size"])
    unit: str = found.group(2) or "M"
    return float(found.group(1)) * float(1024 ** " KMGT".index(unit))


def parse_duration(value: object) -> float:
    """A duration in seconds (``inf`` for unlimited); ValueError names what is valid."""
    if isinstance(value, bool):
        raise ValueError(EXPECTED["duration"])
    if isinstance(value, int | float) and value >= 0:
        return float(value) * 60
    if not isinstance(value, str):
        raise ValueError(EXPECTED["duration"])
    text = value.strip().upper()
    if text in ("UNLIMITED", "INFINITE", "INF"):
        return math.inf
    if _UNITS.match(text):
        return sum(
            float(n) * _SECONDS[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)([DHMS])", text)
        )
    found = _DAYS.match(text)
    if found is not None:
        days, hours, minutes, seconds = (int(g or 0) for g in found.groups())
        return float(days * 86400 + hours * 3600 + minutes * 60 + seconds)
    if not _CLOCK.match(text):
        raise ValueError(EXPECTED["duration"])
    parts = [int(p) for p in text.split(":")]
    if len(parts) == 1:  # minutes
        return float(parts[0] * 60)
    if len(parts) == 2:  # minutes:seconds
        return float(parts[0] * 60 + parts[1])
    return float(parts[0] * 3600 + parts[1] * 60 + parts[2])


def slurm_time(value: object) -> str:
    """A duration as ``sbatch --time`` takes it: SLURM's own syntax unchanged, else minutes
    (rounded up) or ``D-HH:MM:SS``; ``UNLIMITED``."""
    if isinstance(value, str) and _SLURM_TIME.match(value.strip()):
        return value.strip()
    seconds = parse_duration(value)
    if math.isinf(seconds):
        return "UNLIMITED"
    whole = math.ceil(seconds)
    if whole % 60 == 0:
        return str(whole // 60)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{days}-{hours:02d}:{minutes:02d}:{secs:02d}"


def slurm_mem(value: object) -> str:
    """A size as ``sbatch --mem`` takes it: SLURM's own syntax unchanged, else megabytes
    (rounded up)."""
    if isinstance(value, str) and _SLURM_MEM.match(value.strip()):
        return value.strip()
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return str(value)
    return str(math.ceil(parse_size(value) / 1024**2))
