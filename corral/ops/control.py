"""Acting on jobs found in a workspace: their live state, their logs, cancelling, removing.

Every operation goes through the job's own launcher, rebuilt from what the workspace
recorded (:class:`Reach`): the launcher type and the connector named in the job's launch
record or local pointer, looked up in the plugins' registries, with the interpreter and
setup lines of its ``job.sh``. So a plugin launcher gets ``corral jobs ls --refresh``,
``log -f``, ``kill`` and ``rm`` by implementing the launcher contract
(:mod:`corral.core.launcher`). Each operation costs the launcher's batched calls: one or two
per host for all the jobs on that host.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from contextlib import suppress
from pathlib import Path, PurePosixPath
from typing import Any

from corral.connectors.base import Connector
from corral.core.job import Failure, FailureReason, JobState, Status, Tracked
from corral.core.launcher import Launcher, Origin
from corral.core.pointer import update_pointer
from corral.core.script import parse_job_script
from corral.core.workspace import SUBMIT_LOCK, Workspace, final_state, state_dir
from corral.errors import ConfigError, CorralError
from corral.ops.inventory import JobInfo, read_job
from corral.plugins.manager import PluginManager

CANCELLED = Failure(FailureReason.CANCELLED, "cancelled with corral kill")


class Found:
    """A job of the workspace as a launcher tracks it (:class:`~corral.core.job.Tracked`)."""

    __slots__ = ("dependencies", "directory", "failure", "handle", "info", "name", "state")

    def __init__(self, info: JobInfo) -> None:
        self.info = info
        self.name = info.name
        self.directory = Path(info.directory)
        self.handle: Any = info.handle
        self.state: JobState = info.state
        self.failure: Failure | None = info.failure
        self.dependencies: tuple[Tracked, ...] = ()


class Reach:
    """The launchers of jobs found in a workspace, each rebuilt once (per type, connector,
    interpreter and workdir) from the jobs' records, through ``plugins``' registries."""

    def __init__(self, plugins: PluginManager) -> None:
        self.plugins = plugins
        self._built: dict[str, Launcher] = {}

    def connector(self, job: JobInfo) -> Connector:
        """The connector to ``job``'s host, from its pointer (this machine without one)."""
        description: dict[str, Any] = dict(job.pointer or {"connector": "local"})
        kind = str(description.get("connector") or "local")
        return self.plugins.connectors.get(kind).reconnect(description)

    def origin(self, job: JobInfo) -> Origin:
        """Where ``job``'s launcher is and what its jobs run with, from the job's records."""
        connector = self.connector(job)
        try:
            script = parse_job_script(job.script_path.read_text(encoding="utf-8"))
        except OSError:
            raise ConfigError(f"{job.name}: no copy of its job.sh at {job.script_path}") from None
        workdir = str(PurePosixPath(job.directory).parents[2])  # <workdir>/jobs/<type>/<id>
        return Origin(connector, script.python, tuple(script.setup), workdir)

    def launcher(self, job: JobInfo) -> Launcher:
        """The launcher of a started job (its records name one)."""
        if job.launcher is None:
            raise ConfigError(f"{job.name} was never started: no launcher is recorded for it")
        origin = self.origin(job)
        key = json.dumps(
            [job.launcher, job.pointer and {k: job.pointer.get(k) for k in
             ("connector", "host", "alias", "config_file")}, origin.python, origin.setup,
             origin.workdir],
            sort_keys=True,
        )
        if key not in self._built:
            cls = self.plugins.launchers.get(job.launcher)
            self._built[key] = cls.for_recorded(origin)
        return self._built[key]

    def groups(self, jobs: Sequence[JobInfo]) -> list[tuple[Launcher, list[JobInfo]]]:
        """``jobs`` by launcher, in order of first appearance."""
        grouped: dict[int, tuple[Launcher, list[JobInfo]]] = {}
        for job in jobs:
            launcher = self.launcher(job)
            grouped.setdefault(id(launcher), (launcher, []))[1].append(job)
        return list(grouped.values())


def _learned(job: JobInfo, status: Status) -> JobInfo:
    """``job`` with a status its launcher told: remote pointers record it; a job here that
    ended without a result (no marker) is ``lost``, as the inventory calls it."""
    state, failure = status
    if job.remote:
        if (state, failure) != (job.state, job.failure):
            pointer = update_pointer(job.local_dir, status)
            return dataclasses.replace(job, state=state, failure=failure, pointer=pointer)
        return job
    lost = failure is not None and failure.reason is FailureReason.LOST
    if state is JobState.FAILED and lost and final_state(job.local_dir) is None:
        return dataclasses.replace(job, state=JobState.LOST, failure=None)
    return dataclasses.replace(job, state=state, failure=failure)


# --- live state ------------------------------------------------------------------------


def refresh(
    workspace: Workspace,
    jobs: Sequence[JobInfo],
    plugins: PluginManager,
    *,
    errors: list[CorralError] | None = None,
) -> list[JobInfo]:
    """The current state of ``jobs``: each job here read again from its files, then every
    job still queued or running (here or remote) asked of its launcher, one batched poll per
    launcher; remote jobs' pointers are brought up to date.

    :param errors: given, a launcher that cannot be asked (its host out of reach) leaves its
        jobs at their last known state and its error is added here; else it is raised.
    """
    result: dict[tuple[str, str], JobInfo] = {}
    ask: list[JobInfo] = []
    for job in jobs:
        if not job.remote:
            job = read_job(workspace, job.type_id, job.identifier)
        result[job.type_id, job.identifier] = job
        if (job.remote and not job.final) or job.state in (JobState.RUNNING, JobState.SUBMITTED):
            ask.append(job)
    reach = Reach(plugins)
    for launcher, group in reach.groups(ask):
        found = [Found(j) for j in group]
        try:
            polled = launcher.poll(found)
        except CorralError as exc:
            if errors is None:
                raise
            errors.append(exc)
            continue
        for item, status in polled.items():
            job = _learned(item.info, status)
            result[job.type_id, job.identifier] = job
    return [result[j.type_id, j.identifier] for j in jobs]


# --- cancelling --------------------------------------------------------------------------


def kill(
    workspace: Workspace, jobs: Sequence[JobInfo], plugins: PluginManager, *, grace: float = 10.0
) -> dict[str, str]:
    """Stop every job of ``jobs`` that is not final; ``{identifier: what happened}``.

    Each job's launcher cancels it (a local process group: SIGTERM, SIGKILL after
    ``grace`` seconds; an SSH host's: the same, there; SLURM: ``scancel``); a job left
    without a final marker gets a ``cancelled`` one.
    """
    outcome: dict[str, str] = {}
    targets: list[JobInfo] = []
    for job in jobs:
        if job.final:
            outcome[job.identifier] = f"already {job.reason}"
        elif job.remote or job.state in (JobState.RUNNING, JobState.SUBMITTED):
            targets.append(job)
        else:
            outcome[job.identifier] = f"not running ({job.state})"
    for launcher, group in Reach(plugins).groups(targets):
        launcher.cancel_grace = float(grace)
        found = [Found(j) for j in group]
        started = [f for f in found if f.handle is not None]
        launcher.cancel(started)
        for item in found:
            outcome[item.info.identifier] = (
                launcher.cancel_outcome(item) if item.handle is not None else "not started"
            )
        markers = launcher.markers(started)
        unmarked = [f for f in started if markers[f] is None]
        launcher.mark_all_failed(dict.fromkeys(unmarked, CANCELLED))
        for item in found:
            if item.info.remote:
                status = markers.get(item) or (JobState.FAILED, CANCELLED)
                update_pointer(item.info.local_dir, status)
    return outcome


# --- logs --------------------------------------------------------------------------------


def read_log(job: JobInfo, plugins: PluginManager, *, stderr: bool = False) -> str:
    """The job's stdout (or stderr) as it is now (bytes that are not UTF-8 replaced)."""
    path = job.log_path(stderr)
    if job.remote:
        data = Reach(plugins).connector(job).read_from(path)
        where = f"{job.host}:{path}"
    else:
        try:
            data = Path(path).read_bytes()
        except FileNotFoundError:
            data = None
        where = path
    if data is None:
        raise ConfigError(f"{job.name} has no {Path(path).name} yet ({where})")
    return data.decode("utf-8", errors="replace")


def follow_log(
    workspace: Workspace,
    job: JobInfo,
    plugins: PluginManager,
    *,
    stderr: bool = False,
    interval: float = 0.2,
) -> Iterator[str]:
    """Yield the job's stdout (or stderr) from the start, as it grows, until the job ends
    (through its launcher's ``follow``). A job not started yet is waited for."""
    while job.launcher is None:
        if job.state.ended:
            return
        time.sleep(interval)
        job = read_job(workspace, job.type_id, job.identifier)
    yield from Reach(plugins).launcher(job).follow(Found(job), stderr=stderr, interval=interval)


# --- removing --------------------------------------------------------------------------


def remove(
    jobs: Sequence[JobInfo],
    plugins: PluginManager,
    *,
    markers: frozenset[JobState] = frozenset({JobState.FAILED}),
) -> dict[str, str]:
    """Remove the directories of ``jobs``, each only if its state did not change; for a
    remote job, its directory on its host (only if its final marker there is one of
    ``markers``) and then the local pointer. ``{identifier: what happened}``."""
    outcome: dict[str, str] = {}
    remote = [j for j in jobs if j.remote]
    for job in jobs:
        if not job.remote:
            outcome[job.identifier] = _remove_local(job)
    for launcher, group in Reach(plugins).groups(remote):
        found = [Found(j) for j in group]
        doomed: list[Found] = []
        for item, status in launcher.markers(found).items():
            if status is not None and status[0] in markers:
                doomed.append(item)
            else:
                now = status[0] if status else "not final"
                outcome[item.info.identifier] = f"kept: now {now}"
        launcher.remove_directories(doomed)
        for item in doomed:
            shutil.rmtree(item.info.local_dir, ignore_errors=True)
            outcome[item.info.identifier] = f"removed (and {item.info.host}:{item.directory})"
    return outcome


def _remove_local(job: JobInfo) -> str:
    from filelock import FileLock, Timeout

    lock = FileLock(state_dir(job.local_dir) / SUBMIT_LOCK, timeout=0)
    try:
        with lock:
            fresh = read_job(Workspace(job.local_dir.parents[2]), job.type_id, job.identifier)
            if fresh.state != job.state:
                return f"kept: now {fresh.state}"
            shutil.rmtree(job.local_dir)
    except Timeout:
        return "kept: a client is submitting it"
    except FileNotFoundError:
        return "already gone"
    with suppress(OSError):
        os.rmdir(job.local_dir.parent)  # the task type's directory, when it was the last
    return "removed"


__all__ = ["CANCELLED", "Found", "Reach", "follow_log", "kill", "read_log", "refresh", "remove"]
