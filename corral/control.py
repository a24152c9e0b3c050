"""Acting on jobs found in a workspace: their live state, their logs, cancelling, removing.

A job that runs elsewhere is reached again from its local pointer: its connector is rebuilt
from the ``alias`` and ``config_file`` recorded there, and the remote interpreter (with the
launcher's setup lines) is read from the local copy of its ``job.sh``. Each operation costs
one or two agent commands per host, for all the jobs on that host.
"""

from __future__ import annotations

import os
import shutil
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

from corral.core import procs
from corral.core.hostjobs import Deferred
from corral.core.job import Failure, FailureReason, JobState
from corral.core.pointer import POINTER
from corral.core.workspace import (
    SUBMIT_LOCK,
    Workspace,
    final_state,
    read_json,
    state_dir,
    write_failed,
    write_json_atomic,
)
from corral.errors import ConfigError
from corral.inventory import JobInfo, parse_job_script, read_job

if TYPE_CHECKING:
    from corral.connectors.base import Connector
    from corral.launchers.host import Host

CANCELLED = Failure(FailureReason.CANCELLED, "cancelled with corral kill")


# --- reaching a remote job again -------------------------------------------------------


def connector_for(job: JobInfo) -> Connector:
    """The connector of a remote job, rebuilt from its pointer."""
    pointer = job.pointer or {}
    kind = pointer.get("connector")
    if kind == "local":
        from corral.connectors.local import LocalConnector

        return LocalConnector()
    if kind == "ssh":
        from corral.connectors.ssh import SSHConnector

        alias = pointer.get("alias") or pointer.get("host")
        if not alias:
            raise ConfigError(f"{job.name}: its pointer names no SSH host")
        return SSHConnector(str(alias), config_file=pointer.get("config_file"))
    raise ConfigError(
        f"{job.name}: cannot reach a job through connector {kind!r} (known: local, ssh)"
    )


def host_for(job: JobInfo, connector: Connector | None = None) -> Host:
    """The host of a remote job, to run agent commands there (python from its job.sh)."""
    from corral.launchers.host import Host

    try:
        script = parse_job_script(job.script_path.read_text(encoding="utf-8"))
    except OSError:
        raise ConfigError(f"{job.name}: no copy of its job.sh at {job.script_path}") from None
    if script.python is None:
        raise ConfigError(f"{job.name}: cannot tell its python from {job.script_path}")
    return Host(
        connector if connector is not None else connector_for(job),
        python=script.python,
        setup=script.setup,
        workdir=None,
    )


def _by_host(jobs: Sequence[JobInfo]) -> dict[tuple[Any, ...], list[JobInfo]]:
    groups: dict[tuple[Any, ...], list[JobInfo]] = defaultdict(list)
    for job in jobs:
        pointer = job.pointer or {}
        key = (
            pointer.get("connector"),
            pointer.get("alias"),
            pointer.get("config_file"),
            pointer.get("host"),
            job.launcher,
        )
        groups[key].append(job)
    return groups


def _status(data: Any) -> tuple[str, Failure | None] | None:
    if data is None:
        return None
    state, failure = data
    return str(state), (Failure.from_json(failure) if failure is not None else None)


def _update_pointer(job: JobInfo, state: str, failure: Failure | None) -> JobInfo:
    path = state_dir(job.local_dir) / POINTER
    data = read_json(path)
    if not isinstance(data, dict):
        return job
    data.update({"state": state, "time": time.time()})
    if failure is not None:
        data["failure"] = failure.to_json()
    else:
        data.pop("failure", None)
    write_json_atomic(path, data)
    return JobInfo(
        job.type_id,
        job.identifier,
        job.local_dir,
        state,
        failure=failure,
        launcher=job.launcher,
        host=job.host,
        location=job.location,
        handle=job.handle,
        remote_dir=job.remote_dir,
        pointer=data,
        time=job.time,
    )


# --- live state ------------------------------------------------------------------------


def refresh(workspace: Workspace, jobs: Sequence[JobInfo]) -> list[JobInfo]:
    """The current state of ``jobs``: local ones read again (SLURM ones with one
    ``squeue``), remote ones asked of their hosts (their pointers are brought up to date)."""
    result: dict[tuple[str, str], JobInfo] = {}
    local_slurm: list[JobInfo] = []
    remote: list[JobInfo] = []
    for job in jobs:
        if job.final:
            result[job.type_id, job.identifier] = job
        elif job.remote:
            remote.append(job)
        else:
            fresh = read_job(workspace, job.type_id, job.identifier)
            if fresh.state == "submitted" and fresh.slurm_id is not None:
                local_slurm.append(fresh)
            result[job.type_id, job.identifier] = fresh
    if local_slurm:
        from corral.launchers import slurm_host

        try:
            flags = slurm_host.alive([j.handle for j in local_slurm])
        except Deferred:  # SLURM did not answer: they stay as their files say
            flags = [True] * len(local_slurm)
        for job, alive in zip(local_slurm, flags, strict=True):
            if not alive:
                job = read_job(workspace, job.type_id, job.identifier)
                if not job.final:
                    job = _with_state(job, "lost")
                result[job.type_id, job.identifier] = job
    for group in _by_host(remote).values():
        for job in _ask_host(group):
            result[job.type_id, job.identifier] = job
    return [result[j.type_id, j.identifier] for j in jobs]


def _with_state(job: JobInfo, state: str) -> JobInfo:
    return JobInfo(
        job.type_id,
        job.identifier,
        job.local_dir,
        state,
        failure=job.failure,
        launcher=job.launcher,
        host=job.host,
        handle=job.handle,
        time=job.time,
    )


def _ask_host(group: list[JobInfo]) -> list[JobInfo]:
    host = host_for(group[0])
    launcher = group[0].launcher or "ssh"
    if launcher == "ssh":  # markers and liveness (pid + start time) in one command
        answers = host.call(
            "poll", {"jobs": [{"dir": j.directory, "handle": j.handle} for j in group]}
        )
        statuses = [_status(a["status"]) for a in answers]
    else:  # liveness from the scheduler, then the markers of those it no longer runs
        answers = host.call("recover", {"launcher": launcher, "dirs": [j.directory for j in group]})
        statuses = [_status(a["status"]) for a in answers]
        for i, answer in enumerate(answers):
            if answer.get("unknown"):  # the scheduler did not answer: as last known
                statuses[i] = (group[i].state, group[i].failure)
        ended = [i for i, s in enumerate(statuses) if s is None]
        if ended:
            markers = host.call("inspect", {"dirs": [group[i].directory for i in ended]})
            lost = Failure(FailureReason.LOST, "the job ended without a result")
            for i, marker in zip(ended, markers, strict=True):
                statuses[i] = _status(marker) or (JobState.FAILED.value, lost)
    updated = []
    for job, status in zip(group, statuses, strict=True):
        assert status is not None
        if (status[0], status[1]) != (job.state, job.failure):
            job = _update_pointer(job, *status)
        updated.append(job)
    return updated


# --- cancelling --------------------------------------------------------------------------


def kill(workspace: Workspace, jobs: Sequence[JobInfo], *, grace: float = 10.0) -> dict[str, str]:
    """Stop every job of ``jobs`` that is not final; ``{identifier: what happened}``.

    Local jobs: SIGTERM to the recorded process group if that process is still the job's
    (same pid, start time and boot), SIGKILL after ``grace`` seconds. SSH jobs: the same,
    by the agent on their host. SLURM jobs: ``scancel`` where the cluster is.
    """
    outcome: dict[str, str] = {}
    local: list[JobInfo] = []
    local_slurm: list[JobInfo] = []
    remote: list[JobInfo] = []
    for job in jobs:
        if job.final:
            outcome[job.identifier] = f"already {job.reason}"
        elif job.remote:
            remote.append(job)
        elif job.slurm_id is not None:
            local_slurm.append(job)
        elif job.state == "running":
            local.append(job)
        else:
            outcome[job.identifier] = f"not running ({job.state})"
    if local:
        from corral import agent

        agent.cancel(
            {
                "handles": [j.handle for j in local],
                "dirs": [str(j.local_dir) for j in local],
                "grace": grace,
            }
        )
        for job in local:
            if final_state(job.local_dir) is None and not procs.handle_alive(job.handle):
                write_failed(job.local_dir, CANCELLED)
            outcome[job.identifier] = f"killed (pid {job.handle['pid']})"
    if local_slurm:
        from corral.connectors.local import LocalConnector

        _scancel(LocalConnector(), local_slurm)
        for job in local_slurm:
            if final_state(job.local_dir) is None:
                write_failed(job.local_dir, CANCELLED)
            outcome[job.identifier] = f"cancelled (SLURM job {job.slurm_id})"
    for group in _by_host(remote).values():
        outcome.update(_kill_remote(group, grace))
    return outcome


def _scancel(connector: Connector, jobs: Sequence[JobInfo]) -> None:
    from corral.errors import SubmissionError

    ids = [j.slurm_id for j in jobs if j.slurm_id is not None]
    if not ids:
        return
    result = connector.run(["scancel", *ids], timeout=120)
    if not result.ok:
        raise SubmissionError(
            "scancel failed", argv=result.argv, returncode=result.returncode, stderr=result.stderr
        )


def _kill_remote(group: list[JobInfo], grace: float) -> dict[str, str]:
    connector = connector_for(group[0])
    host = host_for(group[0], connector)
    outcome: dict[str, str] = {}
    if group[0].launcher == "slurm":
        _scancel(connector, group)
        for job in group:
            outcome[job.identifier] = f"cancelled (SLURM job {job.slurm_id})"
    else:
        started = [j for j in group if j.handle is not None]
        host.call(
            "cancel",
            {
                "handles": [j.handle for j in started],
                "dirs": [j.directory for j in started],
                "grace": grace,
            },
        )
        for job in group:
            what = f"killed on {host}" if job.handle is not None else "not started"
            outcome[job.identifier] = what
    markers = host.call("inspect", {"dirs": [j.directory for j in group]})
    for job, marker in zip(group, markers, strict=True):
        status = _status(marker)
        _update_pointer(job, *(status or (JobState.FAILED.value, CANCELLED)))
    return outcome


# --- logs --------------------------------------------------------------------------------


def read_log(job: JobInfo, *, stderr: bool = False) -> str:
    """The job's stdout (or stderr) as it is now."""
    path = job.log_path(stderr)
    if job.remote and (job.pointer or {}).get("connector") != "local":
        connector = connector_for(job)
        if not connector.exists(path):
            raise ConfigError(f"{job.name} has no {Path(path).name} yet ({job.host}:{path})")
        # not read_text(): a job may print bytes that are not UTF-8 (cat's are replaced)
        return connector.run(["cat", "--", str(path)], check=True).stdout
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        raise ConfigError(f"{job.name} has no {Path(path).name} yet ({path})") from None


SLURM_CHECK_EVERY = 5.0
"""Seconds between two questions to SLURM while following a batch job's log: a job SLURM
ends with a kill (over its memory, cancelled while pending) leaves no marker to wait for."""


def _slurm_ended(job: JobInfo) -> bool:
    """Whether SLURM (on this machine) has ended ``job``; False when it cannot tell."""
    from corral.launchers import slurm_host

    if job.slurm_id is None:
        return False
    try:
        return not slurm_host.alive([job.handle])[0]
    except Deferred:
        return False


def follow_log(
    workspace: Workspace, job: JobInfo, *, stderr: bool = False, interval: float = 0.2
) -> Iterator[str]:
    """Yield the job's stdout (or stderr) from the start, as it grows, until the job ends."""
    if job.remote and (job.pointer or {}).get("connector") != "local":
        yield from _follow_remote(job, stderr)
        return
    path = job.log_path(stderr)
    position = 0
    finishing = False
    asked = time.monotonic()
    while True:
        info = read_job(workspace, job.type_id, job.identifier)
        ended = info.final or info.state in ("lost", "missing")
        if job.remote:  # a local pointer to a directory on this machine
            ended = final_state(Path(job.directory)) is not None
        if not ended and job.launcher == "slurm" and time.monotonic() - asked >= SLURM_CHECK_EVERY:
            asked = time.monotonic()
            ended = _slurm_ended(info)
        chunk = ""
        with suppress(FileNotFoundError), open(path, encoding="utf-8", errors="replace") as f:
            f.seek(position)
            chunk = f.read()
            position = f.tell()
        if chunk:
            yield chunk
            continue
        if ended:
            if finishing:
                return
            finishing = True  # one more read: the last output may land after the marker
        time.sleep(interval)


def _follow_remote(job: JobInfo, stderr: bool) -> Iterator[str]:
    from corral.connectors.ssh import SSHConnector

    connector = connector_for(job)
    if not isinstance(connector, SSHConnector):
        raise ConfigError(f"{job.name}: following a log needs an SSH connection")
    path = job.log_path(stderr)
    pid = job.handle.get("pid") if isinstance(job.handle, dict) else None
    if job.launcher != "slurm" and isinstance(pid, int):
        # tail ends with the job's process (on the job's host: the pid is the job's there)
        yield from connector.stream(["tail", "-n", "+1", "-F", f"--pid={pid}", path])
        return
    # A batch job's process is on a compute node: watch for its final marker instead, and
    # ask SLURM now and then whether it ended the job without one.
    from corral.launchers.slurm_states import ACTIVE, FORGOTTEN

    every = int(SLURM_CHECK_EVERY)
    active = "|".join(f"{state}*" for state in ACTIVE)
    script = (
        'tail -n +1 -F "$1" 2>/dev/null & t=$!; n=0; '
        'while [ ! -e "$2/done" ] && [ ! -e "$2/failed" ]; do '
        f'sleep 1; n=$((n + 1)); [ $((n % {every})) -eq 0 ] && [ -n "$3" ] || continue; '
        's=$(squeue -h -j "$3" -t all -o %T 2>&1); r=$?; '
        f'case "$s" in *"{FORGOTTEN}"*) break ;; esac; '
        '[ "$r" -eq 0 ] || continue; '  # no answer from the controller: ask again later
        f'case "$s" in {active}) ;; *) break ;; esac; '
        "done; sleep 1; kill $t"
    )
    argv = ["sh", "-c", script, "follow", path, f"{job.directory}/.corral", job.slurm_id or ""]
    yield from connector.stream(argv)


# --- removing --------------------------------------------------------------------------


def remove(
    jobs: Sequence[JobInfo], *, markers: frozenset[str] = frozenset({"failed"})
) -> dict[str, str]:
    """Remove the directories of ``jobs``, each only if its state did not change; for a
    remote job, its directory on its host (only if its final marker there is one of
    ``markers``) and then the local pointer. ``{identifier: what happened}``."""
    outcome: dict[str, str] = {}
    remote = [j for j in jobs if j.remote]
    for job in jobs:
        if not job.remote:
            outcome[job.identifier] = _remove_local(job)
    for group in _by_host(remote).values():
        outcome.update(_remove_remote(group, markers))
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


def _remove_remote(group: list[JobInfo], markers: frozenset[str]) -> dict[str, str]:
    connector = connector_for(group[0])
    host = host_for(group[0], connector)
    found = host.call("inspect", {"dirs": [j.directory for j in group]})
    outcome: dict[str, str] = {}
    doomed: list[JobInfo] = []
    for job, marker in zip(group, found, strict=True):
        status = _status(marker)
        if status is not None and status[0] in markers:
            doomed.append(job)
        else:
            outcome[job.identifier] = f"kept: now {status[0] if status else 'not final'}"
    if doomed:
        connector.run(["rm", "-rf", "--", *[j.directory for j in doomed]], check=True)
        for job in doomed:
            shutil.rmtree(job.local_dir, ignore_errors=True)
            outcome[job.identifier] = f"removed (and {job.host}:{job.directory})"
    return outcome
