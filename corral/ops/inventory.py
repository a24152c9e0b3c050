"""What a workspace holds, read from its files alone: jobs, experiments and their runs.

Nothing here connects anywhere. A job that runs elsewhere (an SSH host, a cluster) is known
by its local pointer (:mod:`corral.core.pointer`) and shows its *last known* state. A local
job's liveness is read from ``/proc`` (pid + start time), which is still only reading.

::

    for job in list_jobs(Workspace("./workspace"), states={"failed"}):
        print(job.name, job.failure)
"""

from __future__ import annotations

import json
import os
import re
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from corral.core import procs
from corral.core.job import Failure, JobState
from corral.core.pointer import POINTER
from corral.core.workspace import DONE, FAILED, LAUNCH, STATE_DIR, Workspace, marker_status
from corral.errors import ConfigError, did_you_mean

STATES: tuple[JobState, ...] = tuple(JobState)
"""Every state a job read from its files can be in, in the order listings count them (see
:class:`~corral.core.job.JobState`)."""


@dataclass(frozen=True)
class JobInfo:
    """One job of a workspace, as its files describe it."""

    type_id: str
    identifier: str
    local_dir: Path
    state: JobState
    failure: Failure | None = None
    launcher: str | None = None
    host: str | None = None
    """Where the job runs: a host name, or ``user@host:port`` for a remote job."""
    label: str | None = None
    """The hosts-file name of the host it runs on (``gpubox``), if it has one."""
    location: str | None = None
    handle: Any = None
    remote_dir: str | None = None
    pointer: dict[str, Any] | None = None
    time: float | None = None
    """When the job was launched (else when its files were written)."""

    @property
    def short(self) -> str:
        """The identity's first 12 characters."""
        return self.identifier[:12]

    @property
    def task(self) -> str:
        """The task's class name."""
        return self.type_id.rsplit(".", 1)[-1]

    @property
    def name(self) -> str:
        """``Task/identity-prefix``, as the scheduler names jobs."""
        return f"{self.task}/{self.short}"

    @property
    def remote(self) -> bool:
        """Whether the job's directory is elsewhere (the local one is only a pointer)."""
        return self.pointer is not None

    @property
    def directory(self) -> str:
        """The real job directory (on the job's host when remote)."""
        return self.remote_dir if self.remote_dir is not None else str(self.local_dir)

    @property
    def slurm_id(self) -> str | None:
        """The SLURM job id (``123_4`` for an array task), if submitted to SLURM; for a
        packed job, its worker's (``123_4 (worker)``)."""
        handle = self.handle
        if isinstance(handle, dict) and handle.get("worker"):
            return f"{handle['worker']} (worker)"
        return str(handle["id"]) if isinstance(handle, dict) and "id" in handle else None

    @property
    def final(self) -> bool:
        """Whether the job is done or failed."""
        return self.state.final

    @property
    def reason(self) -> str:
        """``state`` or ``failed (reason)``."""
        if self.failure is None:
            return self.state
        return f"{self.state} ({self.failure.reason.value})"

    @property
    def script_path(self) -> Path:
        """The local copy of ``job.sh`` (the job's own for a local job)."""
        return self.local_dir / STATE_DIR / "job.sh" if self.remote else self.local_dir / "job.sh"

    @property
    def params_path(self) -> Path:
        """The local copy of ``params.json``."""
        base = self.local_dir / STATE_DIR if self.remote else self.local_dir
        return base / "params.json"

    @property
    def provenance_path(self) -> Path:
        """The job's ``provenance.json`` (its local copy for a remote job)."""
        return self.local_dir / STATE_DIR / "provenance.json"

    def log_path(self, stderr: bool = False) -> str:
        """The path of the job's stdout (or stderr), on its host."""
        return f"{self.directory}/{'stderr' if stderr else 'stdout'}"

    def age(self, now: float | None = None) -> float | None:
        """Seconds since :attr:`time`."""
        if self.time is None:
            return None
        return (time.time() if now is None else now) - self.time


def _bytes(path: str) -> bytes | None:
    # os.open/os.read rather than open(): no text layer, a third of the time per small file
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        data = b""
        while chunk := os.read(fd, 1 << 16):
            data += chunk
        return data
    except OSError:
        return None
    finally:
        os.close(fd)


def _read(path: str) -> Any:
    data = _bytes(path)
    try:
        return None if data is None else json.loads(data)
    except ValueError:
        return None


def _mtime(path: str) -> float | None:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return None


def read_job(workspace: Workspace, type_id: str, identifier: str) -> JobInfo:
    """One job, from its local directory (state ``not submitted`` when it has none)."""
    local = workspace.job_dir(type_id, identifier)
    return _job(local, type_id, identifier, procs.hostname())


def _job(local: Path, type_id: str, identifier: str, here: str) -> JobInfo:
    base = str(local)
    sd = f"{base}/{STATE_DIR}"
    try:
        names = set(os.listdir(sd))
    except OSError:
        names = set()
        if not os.path.isdir(base):
            return JobInfo(type_id, identifier, local, JobState.NOT_SUBMITTED)
    if POINTER in names:
        pointer = _read(f"{sd}/{POINTER}")
        if isinstance(pointer, dict):
            return _remote(local, type_id, identifier, pointer, sd)
    launch = _read(f"{sd}/{LAUNCH}") if LAUNCH in names else None
    launch = launch if isinstance(launch, dict) else {}
    state, failure = JobState.CREATED, None
    failed = None
    if DONE not in names and FAILED in names:
        failed = (_bytes(f"{sd}/{FAILED}") or b"").decode("utf-8", errors="replace")
    final = marker_status(DONE in names, failed)
    if final is not None:
        state, failure = final
    handle = launch.get("handle")
    launcher = launch.get("launcher")
    host = launch.get("host")
    if state is JobState.CREATED and launch:
        if isinstance(handle, dict) and "pid" in handle:
            if host not in (None, here):
                state = JobState.UNKNOWN
            else:
                state = JobState.RUNNING if procs.handle_alive(handle) else JobState.LOST
        else:  # a batch job: only the scheduler knows whether it still queues or runs
            state = JobState.SUBMITTED
    started = launch.get("time")
    when = float(started) if isinstance(started, int | float) else _mtime(f"{base}/params.json")
    return JobInfo(
        type_id,
        identifier,
        local,
        state,
        failure=failure,
        launcher=launcher if isinstance(launcher, str) else None,
        host=host if isinstance(host, str) else None,
        handle=handle,
        time=when,
    )


def _remote(
    local: Path, type_id: str, identifier: str, pointer: dict[str, Any], sd: str
) -> JobInfo:
    raw = pointer.get("failure")
    failure = Failure.from_json(raw) if isinstance(raw, dict) else None
    try:
        state = JobState(str(pointer.get("state") or "unknown"))
    except ValueError:
        state = JobState.UNKNOWN
    host = pointer.get("host") or pointer.get("alias")
    when = _mtime(f"{sd}/job.sh") or _mtime(f"{sd}/{POINTER}")
    remote_dir = pointer.get("remote_dir")
    return JobInfo(
        type_id,
        identifier,
        local,
        state,
        failure=failure,
        launcher=str(pointer.get("launcher") or "") or None,
        host=str(host) if host else None,
        label=str(pointer["label"]) if pointer.get("label") else None,
        location=str(pointer.get("location") or "") or None,
        handle=pointer.get("handle"),
        remote_dir=str(remote_dir) if remote_dir else None,
        pointer=pointer,
        time=when,
    )


def job_dirs(workspace: Workspace) -> Iterator[tuple[str, str, Path]]:
    """``(type id, identifier, local directory)`` of every job directory, sorted."""
    try:
        types = sorted(e.name for e in os.scandir(workspace.jobs) if e.is_dir())
    except OSError:
        return
    for type_id in types:
        tdir = workspace.jobs / type_id
        try:
            idents = sorted(e.name for e in os.scandir(tdir) if e.is_dir())
        except OSError:
            continue
        for ident in idents:
            yield type_id, ident, tdir / ident


def list_jobs(
    workspace: Workspace, *, states: Iterable[str] | None = None, since: float | None = None
) -> list[JobInfo]:
    """Every job of ``workspace``, oldest first; only those in ``states`` and launched (or
    written) at or after ``since`` when given."""
    wanted = {JobState(s) for s in states} if states is not None else None
    here = procs.hostname()
    jobs = []
    for type_id, ident, local in job_dirs(workspace):
        info = _job(local, type_id, ident, here)
        if wanted is not None and info.state not in wanted:
            continue
        if since is not None and (info.time is None or info.time < since):
            continue
        jobs.append(info)
    jobs.sort(key=lambda j: (j.time or 0.0, j.type_id, j.identifier))
    return jobs


def find_job(workspace: Workspace, ref: str) -> JobInfo:
    """The one job whose identity starts with ``ref`` (or ``type id/identity prefix``).

    Unknown or ambiguous references raise a one-line ConfigError naming the candidates.
    """
    ref = ref.strip().rstrip("/")
    if ref.startswith("jobs/"):
        ref = ref[len("jobs/") :]
    type_part, _, prefix = ref.rpartition("/")
    if not prefix:
        raise ConfigError("empty job id")
    matches = [
        (t, i)
        for t, i, _ in job_dirs(workspace)
        if i.startswith(prefix)
        and (not type_part or t == type_part or t.rsplit(".", 1)[-1] == type_part)
    ]
    if len(matches) == 1:
        return read_job(workspace, *matches[0])
    if not matches:
        known = [f"{t.rsplit('.', 1)[-1]}/{i[:12]}" for t, i, _ in job_dirs(workspace)]
        hint = f"; jobs there: {', '.join(known[:5])}" + (", ..." if len(known) > 5 else "")
        close = did_you_mean(ref, [*known, *(k.split("/", 1)[1] for k in known)])
        raise ConfigError(
            f"no job {ref!r}{close} in {workspace.root}"
            + (hint if known else " (it has no jobs)")
        )
    shown = ", ".join(f"{t.rsplit('.', 1)[-1]}/{i[:16]}" for t, i in matches[:6])
    more = f" and {len(matches) - 6} more" if len(matches) > 6 else ""
    raise ConfigError(f"job id {ref!r} is ambiguous: {shown}{more}")


# --- experiments ------------------------------------------------------------------------


@dataclass(frozen=True)
class RunInfo:
    """One run of an experiment: the jobs it submitted and their states now."""

    experiment: str
    run_id: str
    path: Path
    jobs: list[JobInfo] = field(default_factory=list)
    launchers: dict[str, str] = field(default_factory=dict)
    """Launcher names by identifier, as recorded when submitted."""

    @property
    def counts(self) -> Counter[JobState]:
        """How many jobs in each state."""
        return Counter(j.state for j in self.jobs)

    @property
    def started(self) -> float | None:
        """When the run started (from its id, ``YYYYmmdd-HHMMSS-pid``)."""
        try:
            return datetime.strptime(self.run_id[:15], "%Y%m%d-%H%M%S").timestamp()
        except ValueError:
            return _mtime(str(self.path))

    @property
    def final(self) -> bool:
        """Whether every job of the run is done or failed."""
        return all(j.final for j in self.jobs)


@dataclass(frozen=True)
class ExperimentInfo:
    """An experiment of a workspace and its runs, oldest first."""

    name: str
    runs: list[RunInfo]
    latest_id: str | None

    @property
    def latest(self) -> RunInfo | None:
        """The run named by ``latest`` (else the newest)."""
        for run in self.runs:
            if run.run_id == self.latest_id:
                return run
        return self.runs[-1] if self.runs else None


def read_run(workspace: Workspace, name: str, run_id: str) -> RunInfo:
    """A run of experiment ``name``, with the current state of each job it submitted."""
    path = workspace.experiments / name / "runs" / f"{run_id}.jsonl"
    here = procs.hostname()
    seen: dict[tuple[str, str], str] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        lines = []
    for line in lines:
        try:
            entry = json.loads(line)
            seen.setdefault((entry["type_id"], entry["identifier"]), str(entry.get("launcher")))
        except (ValueError, KeyError, TypeError):
            continue  # a line being written
    jobs = [_job(workspace.job_dir(t, i), t, i, here) for t, i in seen]
    return RunInfo(name, run_id, path, jobs, {i: launcher for (_, i), launcher in seen.items()})


def read_experiment(workspace: Workspace, name: str) -> ExperimentInfo:
    """Experiment ``name`` with all its runs; a ConfigError naming the others if unknown."""
    root = workspace.experiments / name
    if not (root / "runs").is_dir():
        known = [e.name for e in list_experiment_names(workspace)]
        listed = ", ".join(known) if known else "none"
        raise ConfigError(
            f"no experiment {name!r}{did_you_mean(name, known)} in {workspace.root} "
            f"(experiments: {listed})"
        )
    run_ids = sorted(p.name[: -len(".jsonl")] for p in (root / "runs").glob("*.jsonl"))
    try:
        latest = (root / "latest").read_text().strip() or None
    except OSError:
        latest = None
    return ExperimentInfo(name, [read_run(workspace, name, r) for r in run_ids], latest)


def list_experiment_names(workspace: Workspace) -> list[os.DirEntry[str]]:
    """The experiment directories of ``workspace``, sorted by name."""
    try:
        entries = [e for e in os.scandir(workspace.experiments) if e.is_dir()]
    except OSError:
        return []
    return sorted(entries, key=lambda e: e.name)


def list_experiments(workspace: Workspace) -> list[ExperimentInfo]:
    """Every experiment of ``workspace`` with its runs."""
    return [read_experiment(workspace, e.name) for e in list_experiment_names(workspace)]


# --- times ---------------------------------------------------------------------------


_SPAN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_since(text: str, now: float | None = None) -> float:
    """A timestamp from ``2h`` / ``30m`` / ``1d`` / ``45s`` / ``1w`` ago, or an ISO date."""
    now = time.time() if now is None else now
    match = _SPAN.match(text)
    if match:
        return now - float(match.group(1)) * _UNITS[match.group(2)]
    try:
        return datetime.fromisoformat(text.strip()).timestamp()
    except ValueError:
        raise ConfigError(
            f"--since {text!r}: give a span (45s, 30m, 2h, 1d, 1w) or an ISO date "
            "(2024-05-01 or 2024-05-01T14:30)"
        ) from None


def format_age(seconds: float | None) -> str:
    """``42s``, ``5m``, ``3h``, ``2d``."""
    if seconds is None:
        return "-"
    seconds = max(seconds, 0.0)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"
