"""SLURM options of a job, checked and rendered by pure functions (golden-file tested).

A job's own ``job.sh`` carries the ``#SBATCH`` lines of its resources (so it can also be
submitted alone, see :func:`corral.host.slurm_text.header`); the array wrapper that starts a
batch is rendered on the host side (:func:`corral.host.slurm_text.array_wrapper`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, NamedTuple

from corral.core.job import Resources
from corral.errors import ConfigError

_TIME = re.compile(r"^(\d+-)?\d+(:\d{1,2}){0,2}$|^\d+$")
_MEM = re.compile(r"^\d+[KMGT]?$")


class SlurmOptions(NamedTuple):
    """Cluster-wide options of a SLURM launcher (per-job needs are in ``job.resources``)."""

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    nodes: int | None = None
    extra: tuple[tuple[str, str | None], ...] = ()

    @classmethod
    def make(cls, *, extra: Mapping[str, Any] | None = None, **values: Any) -> SlurmOptions:
        """Validate and build; ``extra`` maps ``--option`` to a value (or None for a flag)."""
        unknown = set(values) - set(cls._fields)
        if unknown:
            raise ConfigError(
                f"unknown SLURM option {sorted(unknown)[0]!r}; valid: "
                f"{', '.join(sorted((*cls._fields, 'cpus', 'gpus', 'mem', 'time')))}"
            )
        pairs: list[tuple[str, str | None]] = []
        for key, value in (extra or {}).items():
            if not isinstance(key, str) or not re.match(r"^--[a-z][a-z0-9-]*$", key):
                raise ConfigError(f"SLURM extra option {key!r}: expected '--name' (lower case)")
            pairs.append((key, None if value is None else str(value)))
        if values.get("nodes") is not None and (
            not isinstance(values["nodes"], int) or values["nodes"] < 1
        ):
            raise ConfigError(f"SLURM nodes must be a positive int, got {values['nodes']!r}")
        return cls(**values, extra=tuple(pairs))


def check_resources(resources: Resources) -> None:
    """Refuse values SLURM would reject later, with a clear message now."""
    if not isinstance(resources.cpus, int) or resources.cpus < 1:
        raise ConfigError(f"cpus must be a positive int, got {resources.cpus!r}")
    if not isinstance(resources.gpus, int) or resources.gpus < 0:
        raise ConfigError(f"gpus must be an int >= 0, got {resources.gpus!r}")
    if resources.mem is not None and not _MEM.match(str(resources.mem)):
        raise ConfigError(f"mem {resources.mem!r}: expected e.g. '4G', '500M' or '2048'")
    if resources.time is not None and not _TIME.match(str(resources.time)):
        raise ConfigError(
            f"time {resources.time!r}: expected minutes, 'HH:MM:SS', 'MM:SS' or 'D-HH:MM:SS'"
        )


def time_seconds(spec: str) -> int:
    """A SLURM time limit in seconds: ``M``, ``M:S``, ``H:M:S``, ``D-H``, ``D-H:M``, ``D-H:M:S``."""
    if not _TIME.match(spec):
        raise ConfigError(f"time {spec!r}: expected minutes, 'HH:MM:SS', 'MM:SS' or 'D-HH:MM:SS'")
    days, _, rest = spec.rpartition("-")
    parts = [int(p) for p in rest.split(":")]
    if days:
        hours, minutes, seconds = [*parts, 0, 0][:3]
    elif len(parts) == 1:
        hours, minutes, seconds = 0, parts[0], 0
    elif len(parts) == 2:
        hours, minutes, seconds = 0, parts[0], parts[1]
    else:
        hours, minutes, seconds = parts
    return ((int(days or 0) * 24 + hours) * 60 + minutes) * 60 + seconds


def sbatch_options(resources: Resources, options: SlurmOptions) -> list[str]:
    """The ``--option=value`` list of a job's resources and the cluster options."""
    check_resources(resources)
    out = [f"--cpus-per-task={resources.cpus}"]
    if resources.gpus:
        out.append(f"--gres=gpu:{resources.gpus}")
    if resources.mem is not None:
        out.append(f"--mem={resources.mem}")
    if resources.time is not None:
        out.append(f"--time={resources.time}")
    for name in ("partition", "account", "qos", "constraint", "nodes"):
        value = getattr(options, name)
        if value is not None:
            out.append(f"--{name}={value}")
    out.extend(key if value is None else f"{key}={value}" for key, value in options.extra)
    return out
