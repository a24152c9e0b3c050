"""SLURM options of a job, checked and rendered by pure functions (golden-file tested).

A job's own ``job.sh`` carries the ``#SBATCH`` lines of its resources (so it can also be
submitted alone, see :func:`corral.host.slurm_text.header`); the array wrapper that starts a
batch is rendered on the host side (:func:`corral.host.slurm_text.array_wrapper`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, NamedTuple

from corral.core import units
from corral.core.job import Resources
from corral.errors import ConfigError


class SlurmOptions(NamedTuple):
    """Cluster-wide options of a SLURM launcher (per-job needs are in ``job.resources``)."""

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    extra: tuple[tuple[str, str | None], ...] = ()

    @classmethod
    def make(cls, *, extra: Mapping[str, Any] | None = None, **values: Any) -> SlurmOptions:
        """Validate and build; ``extra`` maps ``--option`` to a value (or None for a flag)."""
        unknown = set(values) - set(cls._fields)
        if unknown:
            raise ConfigError(
                f"unknown SLURM option {sorted(unknown)[0]!r}; valid: "
                f"{', '.join(sorted((*cls._fields, *Resources.FIELDS)))}"
            )
        pairs: list[tuple[str, str | None]] = []
        for key, value in (extra or {}).items():
            if not isinstance(key, str) or not re.match(r"^--[a-z][a-z0-9-]*$", key):
                raise ConfigError(f"SLURM extra option {key!r}: expected '--name' (lower case)")
            pairs.append((key, None if value is None else str(value)))
        return cls(**values, extra=tuple(pairs))


def time_seconds(spec: str) -> int:
    """A time limit in seconds (SLURM's syntax or corral's, see :mod:`corral.core.units`)."""
    return int(units.parse_duration(spec))


def sbatch_options(resources: Resources, options: SlurmOptions) -> list[str]:
    """The ``--option=value`` list of a job's resources and the cluster options."""
    resources.check()
    out = [f"--cpus-per-task={resources.cpus}"]
    if resources.gpus:
        kind = f"{resources.gpu_type}:" if resources.gpu_type else ""
        out.append(f"--gres=gpu:{kind}{resources.gpus}")
    if resources.mem is not None:
        out.append(f"--mem={units.slurm_mem(resources.mem)}")
    if resources.time is not None:
        out.append(f"--time={units.slurm_time(resources.time)}")
    if resources.nodes > 1:
        out.append(f"--nodes={resources.nodes}")
    if resources.tasks > 1:
        per_node = 1 if resources.torchrun else resources.tasks_per_node
        out.append(f"--ntasks-per-node={per_node}")
    for name in ("partition", "account", "qos", "constraint"):
        value = getattr(options, name)
        if value is not None:
            out.append(f"--{name}={value}")
    out.extend(key if value is None else f"{key}={value}" for key, value in options.extra)
    return out
