"""Job directories on the machine this code runs on: recover, claim and start, poll.

The local launcher calls these in the client; remote launchers call them on the remote host
through :mod:`corral.host.agent`, one command for a whole batch. Either way a job is started under
its job lock (``.corral/lock``) only if it is neither done nor still running, so two clients
never start it twice.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from corral.core import procs
from corral.core.job import Deferred, Failure, FailureReason, JobState, Status
from corral.core.workspace import (
    LAUNCH,
    RUN_LOCK,
    SECRETS,
    SUBMIT_LOCK,
    Writer,
    clear_final,
    file_mode,
    final_state,
    keep_logs,
    read_json,
    state_dir,
    write_failed,
)
from corral.errors import SubmissionError

__all__ = ["Deferred", "Status", "ended", "not_yet", "poll", "recover", "start"]

LOCK_TIMEOUT = 120.0


def not_yet(exc: Deferred) -> Status:
    """The status of jobs kept ready by ``exc`` (the failure only says why)."""
    return JobState.READY, Failure(FailureReason.REJECTED, f"not yet: {exc}")


def recover(
    dirs: Sequence[Path], launcher: str, alive: Callable[[list[Any]], list[bool]]
) -> list[tuple[Status | None, Any]]:
    """For each job directory: ``((DONE, None), None)``, ``((RUNNING, None), handle)`` when
    its recorded process still runs, or ``(None, None)`` when it must (re)start.

    :raises Deferred: from ``alive``, when it cannot tell.
    """
    result: list[tuple[Status | None, Any]] = [(None, None)] * len(dirs)
    running: list[tuple[int, Any]] = []
    for i, job_dir in enumerate(dirs):
        final = final_state(job_dir)
        if final is not None and final[0] is JobState.DONE:
            result[i] = (final, None)
            continue
        launch = read_json(state_dir(job_dir) / LAUNCH)
        if final is None and launch and launch.get("launcher") == launcher:
            running.append((i, launch.get("handle")))
    if running:
        for (i, handle), is_alive in zip(running, alive([h for _, h in running]), strict=True):
            if is_alive:
                result[i] = ((JobState.RUNNING, None), handle)
            else:  # it may have finished since we looked; a failure is re-run
                final = final_state(dirs[i])
                if final is not None and final[0] is JobState.DONE:
                    result[i] = (final, None)
    return result


def start(
    entries: Sequence[tuple[Path, dict[str, str]]],
    launcher: str,
    *,
    alive: Callable[[list[Any]], list[bool]],
    spawn: Callable[[list[Path]], list[Any]],
    write: Writer,
) -> list[tuple[Status, Any]]:
    """Write each job's files and start it, unless it is done or running already.

    ``entries`` are ``(job directory, {file name: content})``; ``job.sh`` is made executable.
    Returns, per entry, its status and handle (new, or of the run found still going).
    """
    from filelock import FileLock

    result: list[tuple[Status, Any] | None] = [None] * len(entries)
    fresh: list[int] = []
    with ExitStack() as locks:
        # Every lock first, in one global order (two clients never wait on each other in a
        # cycle), then one liveness check for the whole batch (one squeue, not one per job).
        for job_dir in sorted({job_dir for job_dir, _ in entries}):
            sd = state_dir(job_dir)
            sd.mkdir(parents=True, exist_ok=True)
            locks.enter_context(FileLock(sd / SUBMIT_LOCK, timeout=LOCK_TIMEOUT))
        try:
            found = recover([job_dir for job_dir, _ in entries], launcher, alive)
        except Deferred as exc:  # cannot tell what still runs: start nothing now
            return [(not_yet(exc), None) for _ in entries]
        for i, ((job_dir, files), (status, handle)) in enumerate(
            zip(entries, found, strict=True)
        ):
            if status is not None:
                result[i] = (status, handle)
                continue
            clear_final(job_dir)
            keep_logs(job_dir)
            for name, text in files.items():
                write(job_dir / name, text, file_mode(name))
            if SECRETS in files:  # a directory holding secrets is its owner's only
                job_dir.chmod(0o700)
            fresh.append(i)
        if fresh:
            try:
                handles = spawn([entries[i][0] for i in fresh])
            except Deferred as exc:
                for i in fresh:
                    result[i] = (not_yet(exc), None)
                return [r for r in result if r is not None]
            except Exception as exc:
                if isinstance(exc, SubmissionError):  # the scheduler said no: say why
                    tail = exc.stderr.strip().splitlines()[-1:] or [str(exc)]
                    failure = Failure(FailureReason.REJECTED, tail[0], exc.returncode)
                else:
                    failure = Failure(FailureReason.FAILED, f"submission failed: {exc}")
                for i in fresh:
                    write_failed(entries[i][0], failure, write=write)
                    result[i] = ((JobState.FAILED, failure), None)
                return [r for r in result if r is not None]
            host = procs.hostname()
            for i, handle in zip(fresh, handles, strict=True):
                record = {"launcher": launcher, "handle": handle, "host": host, "time": time.time()}
                write(state_dir(entries[i][0]) / LAUNCH, json.dumps(record, sort_keys=True), 0o644)
                result[i] = ((JobState.RUNNING, None), handle)
    return [r for r in result if r is not None]


def stderr_tail(job_dir: Path) -> str:
    """The last line of a job's stderr."""
    try:
        with open(job_dir / "stderr", "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 4096))
            lines = f.read().decode(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1] if lines else ""


def ended(job_dir: Path, returncode: int | None) -> Status:
    """The status of a job whose process ended: its marker; running when another process
    holds its run lock; else failed, from the exit status."""
    final = final_state(job_dir)
    if final is not None:
        return final
    if procs.handle_alive(read_json(state_dir(job_dir) / RUN_LOCK)):
        # Another process runs the job: one started by a client killed before it recorded
        # the start, and ours ended finding the job running.
        return JobState.RUNNING, None
    if returncode is None:
        failure = Failure(FailureReason.LOST, "the job process ended without a result")
    elif returncode < 0:
        name = signal.Signals(-returncode).name
        failure = Failure(FailureReason.KILLED, f"killed by {name}", signal=name)
    else:
        failure = Failure(FailureReason.FAILED, stderr_tail(job_dir), exit_code=returncode)
    return JobState.FAILED, failure


def poll(job_dir: Path, alive: bool) -> Status:
    """The status of a started job that is not our child (liveness known)."""
    final = final_state(job_dir)
    if final is not None:
        return final
    if alive:
        return JobState.RUNNING, None
    return ended(job_dir, None)
