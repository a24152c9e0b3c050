"""Packed jobs: a queue of job directories on the cluster's filesystem, served by workers.

A pool is a directory, ``<workdir>/.corral/pack/<pool>/``:

- ``ready/<identifier>.json``: a job to run, its entry (directory, dependencies, slots,
  GPUs, declared time, attempt);
- ``claimed/<worker>/<identifier>.json``: the job a worker took. A claim is one
  ``rename(2)`` of the entry into the worker's directory: of workers racing for an entry,
  exactly one rename succeeds (POSIX; on NFS the server does the rename atomically, and a
  worker whose reply was lost checks whether the entry arrived in its directory);
- ``workers/<worker>.json``: each worker's heartbeat (rewritten every few seconds) and
  where it runs;
- ``cancel/<identifier>``: a request to stop a job (``corral jobs kill``);
- ``arrays.json``: the SLURM arrays of workers submitted for the pool.

The job itself runs exactly as a job of its own: its ``job.sh`` (or, on the fast path, the
same ``corral.run`` in a forked process), its directory, logs and markers. What is here is
pure file work, used by the agent on the login node (enqueue, status, reap) and by the
workers (:mod:`corral.host.worker`).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from corral.connectors.base import atomic_write_text
from corral.core.job import Failure, FailureReason, JobState, Status
from corral.core.workspace import (
    LAUNCH,
    clear_final,
    final_state,
    read_json,
    state_dir,
    write_failed,
)

READY, CLAIMED, WORKERS, CANCEL, EXITS = "ready", "claimed", "workers", "cancel", "exits"
ARRAYS = "arrays.json"
HEARTBEAT = 5.0
"""Seconds between two heartbeats of a worker."""


def pool_dir(root: Path, pool: str) -> Path:
    """The directory of pool ``pool`` under a launcher's workdir ``root``."""
    return root / ".corral" / "pack" / pool


def entry_name(job_dir: Path) -> str:
    """The queue entry of a job directory (``jobs/<type id>/<identifier>``): its identifier."""
    return job_dir.name + ".json"


@dataclass
class Entry:
    """A queued job: what a worker needs to decide whether it may run it now."""

    dir: str
    deps: list[str]
    cpus: int = 1
    gpus: int = 0
    time: float | None = None
    """Seconds the job declared (its ``time`` resource), if any."""
    attempt: int = 0
    max_attempts: int = 2
    """Attempts before a job whose worker keeps dying is given up (``lost``)."""

    def to_json(self) -> str:
        """The entry file's text."""
        return json.dumps(self.__dict__, sort_keys=True)

    @classmethod
    def read(cls, path: Path) -> Entry | None:
        """The entry at ``path``; None when it is gone (claimed or removed meanwhile)."""
        data = read_json(path)
        if not isinstance(data, dict):
            return None
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text)


def enqueue(pool: Path, entries: list[Entry]) -> list[dict[str, Any]]:
    """Put jobs in the pool's queue; their handles. A job already queued or claimed keeps
    its place (a client that submits again does not queue it twice)."""
    claimed = set(claimed_entries(pool))
    handles = []
    for entry in entries:
        name = entry_name(Path(entry.dir))
        if name not in claimed:
            _write(pool / READY / name, entry.to_json())
        handles.append({"pack": str(pool), "entry": name})
    return handles


def claimed_entries(pool: Path) -> dict[str, str]:
    """``{entry: worker}`` of every claimed entry."""
    found: dict[str, str] = {}
    with contextlib.suppress(FileNotFoundError):
        for worker in os.listdir(pool / CLAIMED):
            with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                for name in os.listdir(pool / CLAIMED / worker):
                    if name.endswith(".json"):
                        found[name] = worker
    return found


def ready_entries(pool: Path) -> list[str]:
    """The names of the entries waiting for a worker, oldest name first."""
    try:
        return sorted(n for n in os.listdir(pool / READY) if n.endswith(".json"))
    except FileNotFoundError:
        return []


def claim(pool: Path, worker: str, name: str) -> bool:
    """Take entry ``name`` for ``worker``: True for exactly one of racing workers."""
    target = pool / CLAIMED / worker / name
    try:
        os.rename(pool / READY / name, target)
        return True
    except FileNotFoundError:
        # Taken by another worker, or (NFS) ours with the reply lost: the entry says which.
        return target.exists()
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return target.exists()
        raise


def release(pool: Path, worker: str, name: str) -> None:
    """Forget a worker's claim once its job is over (its marker is written)."""
    with contextlib.suppress(FileNotFoundError):
        (pool / CLAIMED / worker / name).unlink()


def requeue(pool: Path, worker: str, name: str, entry: Entry, why: str) -> str:
    """Give the job of a claim whose worker ended back to the queue, or end it ``lost``
    when it used its attempts; returns ``"requeued"`` or ``"lost"``."""
    source = pool / CLAIMED / worker / name
    job_dir = Path(entry.dir)
    entry.attempt += 1
    if entry.attempt >= entry.max_attempts:
        failure = Failure(
            FailureReason.LOST, f"{why}; given up after {entry.attempt} attempt(s)"
        )
        write_failed(job_dir, failure)
        source.unlink(missing_ok=True)
        return "lost"
    clear_final(job_dir)  # a `killed` marker its worker's end left is not the job's end
    _write(source, entry.to_json())
    os.rename(source, pool / READY / name)
    return "requeued"


def heartbeat(pool: Path, worker: str, info: dict[str, Any]) -> None:
    """Write the heartbeat of ``worker``."""
    _write(pool / WORKERS / f"{worker}.json", json.dumps({**info, "time": time.time()}))


def workers(pool: Path) -> dict[str, dict[str, Any]]:
    """Every worker's last heartbeat, by worker."""
    found: dict[str, dict[str, Any]] = {}
    with contextlib.suppress(FileNotFoundError):
        for name in os.listdir(pool / WORKERS):
            if name.endswith(".json"):
                data = read_json(pool / WORKERS / name)
                if isinstance(data, dict):
                    found[name[: -len(".json")]] = data
    return found


def record_exit(pool: Path, worker: str, ran: int, why: str) -> None:
    """Note why a worker left and how many jobs it ran (a worker that ran none slows the
    submission of the next ones)."""
    _write(pool / EXITS / f"{worker}.json", json.dumps({"ran": ran, "why": why}))


def exits(pool: Path) -> dict[str, dict[str, Any]]:
    """The exit notes of the workers that left, by worker."""
    found: dict[str, dict[str, Any]] = {}
    with contextlib.suppress(FileNotFoundError):
        for name in os.listdir(pool / EXITS):
            data = read_json(pool / EXITS / name)
            if isinstance(data, dict):
                found[name[: -len(".json")]] = data
    return found


def forget_worker(pool: Path, worker: str) -> None:
    """Remove what is left of an ended worker."""
    (pool / WORKERS / f"{worker}.json").unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        (pool / CLAIMED / worker).rmdir()


def request_cancel(pool: Path, name: str) -> bool:
    """Stop a packed job: one still queued ends at once (``killed``); for one that runs, a
    request its worker acts on. Returns whether it was queued."""
    entry = Entry.read(pool / READY / name)
    (pool / CANCEL).mkdir(parents=True, exist_ok=True)
    try:
        os.rename(pool / READY / name, pool / CANCEL / f"{name}.queued")
    except FileNotFoundError:
        _write(pool / CANCEL / name, "cancel")
        return False
    if entry is not None:
        write_failed(Path(entry.dir), Failure(FailureReason.KILLED, "cancelled before it ran"))
    (pool / CANCEL / f"{name}.queued").unlink(missing_ok=True)
    return True


def cancel_requested(pool: Path, name: str) -> bool:
    """Whether ``corral jobs kill`` asked to stop the job of entry ``name``."""
    return (pool / CANCEL / name).exists()


def status(pool: Path, job_dirs: list[Path]) -> list[tuple[Status, str | None]]:
    """Each job's status and the worker that runs (or ran) it: its marker when it has one,
    else queued or running; a job found nowhere is ``lost``."""
    ready = set(ready_entries(pool))
    claimed = claimed_entries(pool)
    result: list[tuple[Status, str | None]] = []
    for job_dir in job_dirs:
        name = entry_name(job_dir)
        worker = claimed.get(name)
        final = final_state(job_dir)
        if final is not None and worker is None:
            result.append((final, _ran_in(job_dir)))
        elif worker is not None:
            result.append(((JobState.RUNNING, None), worker))
        elif name in ready:
            result.append(((JobState.SUBMITTED, None), None))
        elif final is not None:
            result.append((final, _ran_in(job_dir)))
        else:
            lost = Failure(FailureReason.LOST, "its entry left the pack queue without a result")
            result.append(((JobState.FAILED, lost), None))
    return result


def _ran_in(job_dir: Path) -> str | None:
    launch = read_json(state_dir(job_dir) / LAUNCH) or {}
    handle = launch.get("handle")
    return handle.get("worker") if isinstance(handle, dict) else None


def reap(pool: Path, ended: set[str]) -> dict[str, str]:
    """Give back the claims of the workers in ``ended`` (SLURM says they are over): a job
    done stays done, one a worker's end interrupted is queued again (or ``lost`` after its
    attempts); the job a user cancelled stays cancelled. ``{entry: outcome}``."""
    outcomes: dict[str, str] = {}
    for name, worker in claimed_entries(pool).items():
        if worker not in ended:
            continue
        path = pool / CLAIMED / worker / name
        entry = Entry.read(path)
        if entry is None:
            continue
        final = final_state(Path(entry.dir))
        cancelled = cancel_requested(pool, name)
        if final is not None and (final[0] is JobState.DONE or cancelled or not _killed(final)):
            path.unlink(missing_ok=True)
            outcomes[name] = "kept"
            continue
        if cancelled:
            write_failed(Path(entry.dir), Failure(FailureReason.KILLED, "cancelled"))
            path.unlink(missing_ok=True)
            outcomes[name] = "kept"
            continue
        outcomes[name] = requeue(pool, worker, name, entry, f"its worker {worker} ended")
    for worker in ended:
        forget_worker(pool, worker)
    return outcomes


def _killed(final: Status) -> bool:
    """Whether a job ended on a signal (its worker's end, not its own doing)."""
    failure = final[1]
    return failure is not None and failure.reason is FailureReason.KILLED


def alive(handles: list[Any]) -> list[bool]:
    """Whether each packed job is still queued or claimed (for a client that re-attaches)."""
    result = []
    cache: dict[str, tuple[set[str], dict[str, str]]] = {}
    for handle in handles:
        pool = Path(handle["pack"])
        if str(pool) not in cache:
            cache[str(pool)] = (set(ready_entries(pool)), claimed_entries(pool))
        ready, claimed = cache[str(pool)]
        result.append(handle["entry"] in ready or handle["entry"] in claimed)
    return result


def is_packed(handle: Any) -> bool:
    """Whether a job handle is a packed job's."""
    return isinstance(handle, dict) and "pack" in handle and "entry" in handle
