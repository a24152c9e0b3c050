"""The host-side agent of remote launchers: ``python -m corral.agent COMMAND``.

A remote launcher sends one command per batch over its SSH connection, with a JSON request
on stdin, and reads a JSON answer on stdout. The agent applies :mod:`corral.core.hostjobs`
to job directories on its own host, exactly as the local launcher does on the client's:

- ``version``: corral and Python versions, and ``$HOME``;
- ``recover``: for each directory, done / still running (pid + start time) / to start;
- ``start``: write the code snapshots the jobs need (if missing) and each job's files, and
  start it detached (new session) unless it is done or running already, under its job lock;
- ``poll``: the status of started jobs (markers and liveness together);
- ``cancel``: SIGTERM to each job's process group, SIGKILL to what is left after a grace;
- ``fail``: write the ``failed`` marker of jobs that could not run (a dependency failed);
- ``inspect``: each directory's final marker, if any.

For ``"launcher": "slurm"`` liveness is the job's SLURM state (``squeue``), and a ``start``
writes one array wrapper for the batch and submits it with a single ``sbatch``
(:mod:`corral.launchers.slurm_host`).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from corral.core import hostjobs, procs
from corral.core.hostjobs import Status
from corral.core.job import Failure, FailureReason

CANCEL_GRACE = 10.0
"""Seconds a cancelled job's process group has, after SIGTERM, before SIGKILL."""


def _status_json(status: Status | None) -> Any:
    if status is None:
        return None
    state, failure = status
    return [state.value, failure.to_json() if failure is not None else None]


def _alive(handles: list[Any]) -> list[bool]:
    return [procs.handle_alive(h) for h in handles]


def _write(path: Path, text: str, mode: int) -> None:
    from corral.connectors.local import atomic_write_text

    atomic_write_text(path, text, mode)


def _spawn(dirs: list[Path]) -> list[Any]:
    handles = []
    for job_dir in dirs:
        proc = subprocess.Popen(
            ["bash", str(job_dir / "job.sh")],
            cwd=job_dir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # survives the SSH connection and this agent
            close_fds=True,
        )
        handles.append(procs.handle_for(proc.pid))
    return handles


def version(_: dict[str, Any]) -> Any:
    """Versions, to check the remote side before the first submission."""
    from corral import __version__

    return {
        "corral": __version__,
        "python": platform.python_version(),
        "executable": sys.executable,
        "home": os.path.expanduser("~"),
    }


def _liveness(launcher: str) -> Any:
    if launcher == "slurm":
        from corral.launchers import slurm_host

        return slurm_host.alive
    return _alive


def recover(request: dict[str, Any]) -> Any:
    """``{"launcher", "dirs"}`` → per directory ``{"status", "handle", "unknown"}``
    (``unknown``: whether its job still runs could not be told, SLURM did not answer)."""
    dirs = [Path(d) for d in request["dirs"]]
    if request["launcher"] == "slurm":
        from corral.launchers import slurm_host

        # when SLURM cannot tell, start() looks again before submitting anything
        with contextlib.suppress(hostjobs.Deferred):
            slurm_host.resolve_submissions(dirs, write=_write)
    unknown = False
    try:
        found = hostjobs.recover(dirs, request["launcher"], _liveness(request["launcher"]))
    except hostjobs.Deferred:
        # What still runs is unknown: tell only what is done. A launcher then goes to
        # start(), which checks again under the jobs' locks and starts nothing meanwhile.
        found = hostjobs.recover(dirs, request["launcher"], lambda hs: [False] * len(hs))
        unknown = True
    return [
        {"status": _status_json(s), "handle": h, "unknown": unknown and s is None}
        for s, h in found
    ]


def start(request: dict[str, Any]) -> Any:
    """``{"launcher", "jobs": [{"dir", "files"}], "snapshots"?, "sbatch"?}`` → per job
    ``{"status", "handle", "tried"}`` (``tried``: it went to the spawn, e.g. sbatch).

    ``"snapshots": [{"hash", "dir", "archive" or "source"}]`` are the code snapshots the
    jobs import from, written first where missing. With ``"sbatch": {wrapper path, options,
    name, comment, output, dependency}``, the jobs started go out as one SLURM array;
    otherwise each starts as a detached process.
    """
    entries = [(Path(j["dir"]), j["files"]) for j in request["jobs"]]
    if request.get("snapshots"):
        from corral.core import snapshot

        for entry in request["snapshots"]:
            snapshot.install(entry)
    if "sbatch" in request:
        from corral.launchers import slurm_host

        try:
            slurm_host.resolve_submissions([d for d, _ in entries], write=_write)
        except hostjobs.Deferred as exc:  # a submission SLURM may know: submit nothing now
            status = _status_json(hostjobs.not_yet(exc))
            return [{"status": status, "handle": None, "tried": False} for _ in entries]
        chosen = slurm_host.sbatch_spawn(request["sbatch"], _write)
    else:
        chosen = _spawn
    tried: set[Path] = set()

    def spawn(dirs: list[Path]) -> list[Any]:
        tried.update(dirs)
        return chosen(dirs)

    started = hostjobs.start(
        entries,
        request["launcher"],
        alive=_liveness(request["launcher"]),
        spawn=spawn,
        write=_write,
    )
    return [
        {"status": _status_json(s), "handle": h, "tried": job_dir in tried}
        for (job_dir, _), (s, h) in zip(entries, started, strict=True)
    ]


def poll(request: dict[str, Any]) -> Any:
    """``{"jobs": [{"dir", "handle"}]}`` → per job ``{"status"}``."""
    return [
        {"status": _status_json(hostjobs.poll(Path(j["dir"]), procs.handle_alive(j["handle"])))}
        for j in request["jobs"]
    ]


def _groups_alive(pgids: set[int]) -> set[int]:
    """The process groups among ``pgids`` with a live (not zombie) member, from /proc."""
    found: set[int] = set()
    if not pgids:
        return found
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                data = f.read()
        except OSError:
            continue
        state, _, pgrp = data[data.rindex(")") + 2 :].split()[:3]
        if state not in ("Z", "X") and int(pgrp) in pgids:
            found.add(int(pgrp))
    return found


def cancel(request: dict[str, Any]) -> Any:
    """``{"handles", "dirs"?, "grace"?}``: SIGTERM each live job's process group; SIGKILL
    what is left of the groups after ``grace`` seconds (default :data:`CANCEL_GRACE`).

    A job killed that way leaves no marker of its own: it gets a ``killed`` one (in its
    directory, from ``dirs``, aligned with ``handles``). Answers ``{"killed": [pids]}``.
    """
    handles = request["handles"]
    dirs = request.get("dirs") or [None] * len(handles)
    grace = float(request.get("grace", CANCEL_GRACE))
    groups: list[tuple[Any, str | None]] = []
    for handle, job_dir in zip(handles, dirs, strict=True):
        if procs.handle_alive(handle):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(handle["pid"], signal.SIGTERM)
                groups.append((handle, job_dir))
    # The group outlives its leader while a child the job spawned is in it: a pgid in use
    # is never given to a new process, so signalling it later reaches the same group.
    pgids = {h["pid"] for h, _ in groups}
    deadline = time.monotonic() + grace
    while (alive := _groups_alive(pgids)) and time.monotonic() < deadline:
        time.sleep(0.05)
    killed: list[tuple[Any, str | None]] = []
    for handle, job_dir in groups:
        if handle["pid"] in alive:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(handle["pid"], signal.SIGKILL)
                killed.append((handle, job_dir))
    deadline = time.monotonic() + 5.0
    pgids = {h["pid"] for h, _ in killed}
    while _groups_alive(pgids) and time.monotonic() < deadline:
        time.sleep(0.02)
    from corral.core.workspace import final_state

    failure = Failure(
        FailureReason.KILLED,
        f"cancelled: killed by SIGKILL after {grace:g} s (SIGTERM was not enough)",
        signal="SIGKILL",
    )
    for handle, job_dir in killed:
        if job_dir is None or procs.handle_alive(handle):
            continue
        if final_state(Path(job_dir)) is None:
            hostjobs.write_failure(Path(job_dir), failure, _write)
    return {"killed": [h["pid"] for h, _ in killed]}


def fail(request: dict[str, Any]) -> Any:
    """``{"jobs": [{"dir", "failure"}]}``: write each job's ``failed`` marker."""
    for job in request["jobs"]:
        hostjobs.write_failure(Path(job["dir"]), Failure.from_json(job["failure"]), _write)
    return {}


def inspect(request: dict[str, Any]) -> Any:
    """``{"dirs"}`` → per directory its final status (from the markers) or None."""
    from corral.core.workspace import final_state

    return [_status_json(final_state(Path(d))) for d in request["dirs"]]


COMMANDS = {
    "version": version,
    "recover": recover,
    "start": start,
    "poll": poll,
    "cancel": cancel,
    "fail": fail,
    "inspect": inspect,
}


def main(argv: list[str] | None = None) -> int:
    """Read the request, run the command, print the answer."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] not in COMMANDS:
        print(f"usage: python -m corral.agent {'|'.join(COMMANDS)}", file=sys.stderr)
        return 2
    # The client may vanish mid-command (killed, connection dropped): finish the work anyway,
    # so that a job submitted is always recorded as submitted.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    raw = sys.stdin.read()
    request = json.loads(raw) if raw.strip() else {}
    answer = COMMANDS[args[0]](request)
    with contextlib.suppress(OSError):
        json.dump(answer, sys.stdout)
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
