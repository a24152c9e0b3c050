"""Packed execution: many short jobs served by a few workers.

``PackLauncher(..., pack=Pack(workers=8, per_worker=4, idle="60s"))`` queues each job in a
pool on the cluster's filesystem instead of giving it an allocation of its own; an array of
workers (:mod:`corral.host.worker`) claims and runs them. ``SSHLauncher(..., pack=Pack(...))``
does the same with a fixed pool of worker processes on the host. Every job keeps its directory,
``job.sh``, logs, markers and identity; ``corral jobs log/show/kill`` work unchanged. One
agent command per poll cycle (``pack``) reads every packed job's state, gives back the jobs
of workers SLURM ended, and submits workers while jobs wait.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from corral.core.job import Job, JobState, Resources, Status, Tracked
from corral.core.launcher import J
from corral.core.resumable import ResumableTask
from corral.core.units import parse_duration
from corral.errors import ConfigError
from corral.host import pack as host_pack
from corral.host.protocol import PackedJob, PackSpec, WorkerSpec
from corral.launchers.slurm_script import sbatch_options, time_seconds

if TYPE_CHECKING:
    from corral.core.workspace import Workspace

PackLauncher = Any
"""A SlurmLauncher or an SSHLauncher with ``pack=`` (both agent launchers: ``host``,
``pack``, ``name``); duck-typed, since neither module may import the other."""


@dataclass(frozen=True)
class Pack:
    """How jobs are packed: at most ``workers`` worker allocations at once, each running
    ``per_worker`` one-CPU jobs (a job of ``cpus=2`` takes two) and holding ``gpus`` GPUs;
    a worker leaves after ``idle`` without work. ``time`` and ``mem`` are each worker's
    allocation (default: the launcher's)."""

    workers: int = 4
    per_worker: int = 1
    gpus: int = 0
    idle: str | float = "60s"
    time: str | None = None
    mem: str | None = None

    def __post_init__(self) -> None:
        for name in ("workers", "per_worker"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"Pack({name}={value!r}): expected an int >= 1")
        if not isinstance(self.gpus, int) or isinstance(self.gpus, bool) or self.gpus < 0:
            raise ConfigError(f"Pack(gpus={self.gpus!r}): expected an int >= 0")
        try:
            idle = parse_duration(self.idle) if isinstance(self.idle, str) else float(self.idle)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"Pack(idle={self.idle!r}): expected seconds or '60s'") from exc
        if idle < 0:
            raise ConfigError(f"Pack(idle={self.idle!r}): expected a duration >= 0")

    @property
    def idle_seconds(self) -> float:
        """``idle`` in seconds."""
        return parse_duration(self.idle) if isinstance(self.idle, str) else float(self.idle)


def _slurm(launcher: PackLauncher) -> bool:
    return bool(launcher.name == "slurm")


def worker_spec(launcher: PackLauncher) -> WorkerSpec:
    """How ``launcher``'s workers are started: SLURM array tasks, or processes of an SSH
    host (a launcher rebuilt by ``corral jobs``, without ``pack=``, starts none: ``max`` 0)."""
    p: Pack = launcher.pack if launcher.pack is not None else Pack(workers=1)
    if _slurm(launcher):
        time = p.time or launcher.defaults.time
        resources = Resources(
            cpus=p.per_worker, gpus=p.gpus, gpu_type=launcher.defaults.gpu_type,
            mem=p.mem or launcher.defaults.mem, time=time,
        )
        options = sbatch_options(resources, launcher.options)
        seconds = float(time_seconds(str(time))) if time is not None else None
    else:
        options, seconds = [], None
    return {
        "options": options,
        "max": p.workers if launcher.pack is not None else 0,
        "slots": p.per_worker,
        "gpus": p.gpus,
        "idle": p.idle_seconds,
        "time": seconds,
        "python": launcher.host.python,
        "setup": list(launcher.host.setup),
        "backend": "slurm" if _slurm(launcher) else "process",
    }


def pool_of(launcher: PackLauncher, root: Path) -> str:
    """The pool directory of ``launcher``: one per set of worker options, interpreter and
    setup lines, so launchers that would start the same workers share them."""
    key = hashlib.sha256(json.dumps(worker_spec(launcher), sort_keys=True).encode()).hexdigest()
    return str(host_pack.pool_dir(root, key[:16]))


def check(launcher: PackLauncher, job: Job) -> None:
    """Refuse a job the workers could never run, naming what to change."""
    p = launcher.pack
    assert p is not None
    r = job.resources
    if r.nodes > 1 or r.tasks_per_node > 1 or r.torchrun:
        raise ConfigError(
            f"{job.name}: a distributed job (nodes={r.nodes}, tasks_per_node="
            f"{r.tasks_per_node}) cannot be packed; submit it to a PackLauncher without pack="
        )
    if r.cpus > p.per_worker:
        raise ConfigError(
            f"{job.name}: cpus={r.cpus} is more than a worker's {p.per_worker} slots "
            f"(Pack(per_worker={p.per_worker}))"
        )
    if r.gpus > p.gpus:
        raise ConfigError(
            f"{job.name}: gpus={r.gpus} is more than a worker's {p.gpus} (Pack(gpus={p.gpus}))"
        )


def packed_job(launcher: PackLauncher, job: Job) -> PackedJob:
    """What a worker needs to know of ``job`` before it claims it."""
    # A time the job was given (submit(time=...), a hook) must fit in a worker's time left;
    # the launcher's default, which every job has, says nothing about the job.
    default = launcher.defaults.time if _slurm(launcher) else None
    time = job.resources.time if job.resources.time != default else None
    retries = getattr(launcher, "retries", {})
    attempts = 1 + max(retries.values(), default=0)
    return {
        "deps": [str(d.directory) for d in job.dependencies if d.state is not JobState.DONE],
        "cpus": job.resources.cpus,
        "gpus": job.resources.gpus,
        "time": float(time_seconds(str(time))) if time is not None else None,
        "max_attempts": max(2, attempts),
    }


def start(launcher: PackLauncher, jobs: Sequence[Job], workspace: Workspace) -> dict[Job, Status]:
    """Queue ``jobs`` in the pool (one agent command) and have workers submitted."""
    root = launcher.workspace_root(workspace)
    spec: PackSpec = {
        "pool": pool_of(launcher, root),
        "jobs": {str(j.directory): packed_job(launcher, j) for j in jobs},
        "workers": worker_spec(launcher),
    }
    entries = [(j.directory, launcher.job_files(j, workspace)) for j in jobs]
    snapshots = launcher.host.snapshots(jobs, PurePosixPath(root))
    answers = launcher.host.agent.start(launcher.name, entries, snapshots=snapshots, pack=spec)
    launcher.host.sent(snapshots)
    result: dict[Job, Status] = {}
    for job, answer in zip(jobs, answers, strict=True):
        job.handle = answer.handle
        state = answer.status
        result[job] = (JobState.SUBMITTED, None) if state[0] is JobState.RUNNING else state
    return result


def poll(
    launcher: PackLauncher, jobs: Sequence[Any], cancel: Sequence[Any] = ()
) -> dict[Any, Status]:
    """Every packed job's status, in one agent command per pool (and the stops asked for
    the jobs of ``cancel``)."""
    result: dict[Any, Status] = {}
    by_pool: dict[str, list[Any]] = {}
    for job in [*jobs, *cancel]:
        by_pool.setdefault(job.handle["pack"], [])
    for job in jobs:
        by_pool[job.handle["pack"]].append(job)
    for pool, members in by_pool.items():
        stopping = [j.directory for j in cancel if j.handle["pack"] == pool]
        found, answer = launcher.host.agent.pack(
            pool, [j.directory for j in members], worker_spec(launcher), stopping
        )
        if hasattr(launcher, "counts"):
            launcher.counts["pack"] += 1
        launcher.pack_workers = answer.get("workers", 0)
        if answer.get("refused"):
            launcher.log_refusal(str(answer["refused"]))
        for job, (status, worker) in zip(members, found, strict=True):
            if worker and job.handle.get("worker") != worker:
                job.handle = {**job.handle, "worker": worker}
            result[job] = status
    return result


def poll_split(
    launcher: PackLauncher, jobs: Sequence[J], others: Callable[[Sequence[J]], dict[J, Status]]
) -> dict[J, Status]:
    """The statuses of ``jobs``: the packed ones through :func:`poll`, the others through the
    launcher's own ``others`` (a launcher's jobs of an earlier run may be of both kinds)."""
    packed = [j for j in jobs if is_packed(j)]
    rest = [j for j in jobs if not is_packed(j)]
    found: dict[J, Status] = poll(launcher, packed) if packed else {}
    return {**found, **(others(rest) if rest else {})}


def is_packed(job: Tracked) -> bool:
    """Whether ``job`` was queued in a pack pool."""
    return host_pack.is_packed(job.handle)


def can_wait_for(launcher: PackLauncher, dependency: Job) -> bool:
    """A packed job waits for a dependency whose directory its worker can read: a job of
    the same cluster whose result is final once written (not a resumable one)."""
    if _slurm(launcher):
        same = launcher._same_cluster(dependency)
    else:
        same = str(getattr(dependency.launcher, "host", "")) == str(launcher.host)
    return (
        dependency.handle is not None
        and same
        and not isinstance(dependency.task, ResumableTask)
    )


def describe(launcher: PackLauncher, jobs: Sequence[Job]) -> str:
    """``packed in pool P (W workers) on host``."""
    pools = sorted({Path(j.handle["pack"]).name for j in jobs if is_packed(j)})
    where = launcher.label or launcher.host
    kind = "SLURM worker(s)" if _slurm(launcher) else "worker process(es)"
    workers = launcher.pack.workers if launcher.pack else 0
    return f"packed for {workers} {kind} (pool {', '.join(pools) or '-'}) on {where}"
