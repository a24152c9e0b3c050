"""Stopping a run of an experiment whose client still runs (``corral xp kill``).

The client holds a lock on ``runs/<run>.client`` while it lives. ``corral xp kill`` writes
``runs/<run>.stop``; the client's scheduler sees it within a second, starts nothing more
(jobs not started fail in the client, "not started"), and answers with ``runs/<run>.stopped``
once no start is under way. Only then are the running jobs killed: none can start behind the
kill's back. Then the client leaves, once what runs has ended, saying it was stopped.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Callable
from typing import IO

from corral.connectors.base import atomic_write_text
from corral.core.workspace import Workspace
from corral.errors import ConfigError

STOPPED_BY = "the experiment was stopped with `corral xp kill`"
ANSWER_TIMEOUT = 60.0
"""Seconds ``corral xp kill`` waits for a live client to answer."""


def hold_client(workspace: Workspace, name: str, run_id: str) -> IO[str]:
    """The client's lock of its run, held until the returned file is closed."""
    lock = open(workspace.run_file(name, run_id, ".client"), "a")  # noqa: SIM115
    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return lock


def client_alive(workspace: Workspace, name: str, run_id: str) -> bool:
    """Whether the client of the run still runs (holds its lock)."""
    path = workspace.run_file(name, run_id, ".client")
    try:
        with open(path, "a") as probe:
            try:
                fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            return False
    except OSError:
        return False


def stop_requested(workspace: Workspace, name: str, run_id: str) -> str | None:
    """Why the client must start nothing more, if ``corral xp kill`` said so."""
    return STOPPED_BY if workspace.run_file(name, run_id, ".stop").exists() else None


def answer(workspace: Workspace, name: str, run_id: str) -> None:
    """The client's answer: it starts nothing more, and no start is under way."""
    atomic_write_text(
        workspace.run_file(name, run_id, ".stopped"),
        json.dumps({"pid": os.getpid(), "at": time.time()}) + "\n",
    )


def request_stop(
    workspace: Workspace,
    name: str,
    run_id: str,
    *,
    timeout: float = ANSWER_TIMEOUT,
    waiting: Callable[[str], None] | None = None,
) -> str:
    """Ask the run's client to start nothing more and wait for its answer; what happened,
    for the user (a client that does not answer within ``timeout`` is said to)."""
    if not client_alive(workspace, name, run_id):
        return "no client runs it"
    request = workspace.run_file(name, run_id, ".stop")
    try:
        atomic_write_text(
            request,
            json.dumps({"by": "corral xp kill", "pid": os.getpid(), "at": time.time()}) + "\n",
        )
    except OSError as exc:
        raise ConfigError(f"cannot ask the client of {name} to stop: {request}: {exc}") from exc
    stopped = workspace.run_file(name, run_id, ".stopped")
    pid = run_id.rsplit("-", 1)[-1]
    if waiting is not None:
        waiting(f"asking its client (pid {pid}) to start nothing more...")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if stopped.exists() or not client_alive(workspace, name, run_id):
            return f"its client (pid {pid}) starts nothing more"
        time.sleep(0.1)
    return f"its client (pid {pid}) did not answer within {timeout:g} s"


def release(lock: IO[str]) -> None:
    """Let go of the client's lock."""
    with contextlib.suppress(OSError):
        lock.close()
