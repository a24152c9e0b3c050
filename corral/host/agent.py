"""The host-side agent of launchers: ``python -m corral.host.agent COMMAND``.

A launcher sends one command per batch, with a JSON request on stdin, and reads a JSON
answer on stdout; for job directories on the client's own machine it calls :func:`answer`
in-process with the same JSON. Every request and answer is typed in
:mod:`corral.host.protocol`. The agent applies :mod:`corral.host.jobs` to job directories on
its own host, exactly as the local launcher does on the client's:

- ``version``: corral and Python versions, and ``$HOME``;
- ``recover``: for each directory, done / still running (pid + start time) / to start;
- ``start``: write the code snapshots the jobs need (if missing) and each job's files, and
  start it detached (new session) unless it is done or running already, under its job lock;
- ``poll``: the status of started jobs (markers and liveness together);
- ``cancel``: SIGTERM to each job's process group, SIGKILL to what is left after a grace;
- ``fail``: write the ``failed`` marker of jobs that could not run (a dependency failed);
- ``inspect``: each directory's final marker, if any;
- ``pack``: one poll cycle of a pack pool (:mod:`corral.host.pack_agent`).

For ``"launcher": "slurm"`` liveness is the job's SLURM state (``squeue``), and a ``start``
writes one array wrapper for the batch and submits it with a single ``sbatch``
(:mod:`corral.host.slurm`).
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

from corral._version import __version__
from corral.core import procs
from corral.core.job import Deferred, Failure, FailureReason
from corral.core.workspace import final_state, write_failed, write_local
from corral.host import jobs, slurm
from corral.host.protocol import (
    COMMANDS,
    CancelAnswer,
    CancelRequest,
    FailRequest,
    InspectRequest,
    PackAnswer,
    PackRequest,
    PollAnswer,
    PollRequest,
    RecoverAnswer,
    RecoverRequest,
    StartAnswer,
    StartRequest,
    VersionAnswer,
    WireStatus,
    encode_status,
    roundtrip,
)

CANCEL_GRACE = 10.0
"""Seconds a cancelled job's process group has, after SIGTERM, before SIGKILL."""


def _alive(handles: list[Any]) -> list[bool]:
    return [procs.handle_alive(h) for h in handles]


def spawn_detached(dirs: list[Path]) -> list[Any]:
    """Start each directory's ``job.sh`` in a new session (it outlives the SSH connection
    and this agent); their handles."""
    handles = []
    for job_dir in dirs:
        proc = subprocess.Popen(
            ["bash", str(job_dir / "job.sh")],
            cwd=job_dir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            close_fds=True,
        )
        handles.append(procs.handle_for(proc.pid))
    return handles


def version(_: Any) -> VersionAnswer:
    """Versions, to check the remote side before the first submission."""
    return {
        "corral": __version__,
        "python": platform.python_version(),
        "executable": sys.executable,
        "home": os.path.expanduser("~"),
    }


def _liveness(launcher: str) -> Callable[[list[Any]], list[bool]]:
    return slurm.alive if launcher == "slurm" else _alive


def recover(request: RecoverRequest) -> list[RecoverAnswer]:
    """Per directory: done, still running, or to start (``unknown`` when SLURM did not
    answer whether it still runs)."""
    dirs = [Path(d) for d in request["dirs"]]
    if request["launcher"] == "slurm":
        # when SLURM cannot tell, start() looks again before submitting anything
        with contextlib.suppress(Deferred):
            slurm.resolve_submissions(dirs, write=write_local)
    unknown = False
    try:
        found = jobs.recover(dirs, request["launcher"], _liveness(request["launcher"]))
    except Deferred:
        # What still runs is unknown: tell only what is done. A launcher then goes to
        # start(), which checks again under the jobs' locks and starts nothing meanwhile.
        found = jobs.recover(dirs, request["launcher"], lambda hs: [False] * len(hs))
        unknown = True
    return [
        {"status": encode_status(s), "handle": h, "unknown": unknown and s is None}
        for s, h in found
    ]


def start(request: StartRequest) -> list[StartAnswer]:
    """Write the snapshots the jobs import from (where missing), then each job's files, and
    start it unless it is done or running: one SLURM array with ``sbatch``, else each a
    detached process."""
    entries = [(Path(j["dir"]), j["files"]) for j in request["jobs"]]
    if request.get("snapshots"):
        from corral.core import snapshot  # only a start that brings code needs it

        for entry in request["snapshots"]:
            snapshot.install(entry)
    spec = request.get("sbatch")
    chosen: Callable[[list[Path]], list[Any]] = spawn_detached
    packed = request.get("pack")
    if packed is not None:
        from corral.host import pack_agent

        chosen = pack_agent.enqueue_spawn(packed)
    elif spec is not None:
        try:
            slurm.resolve_submissions([d for d, _ in entries], write=write_local)
        except Deferred as exc:  # a submission SLURM may know: submit nothing now
            status = encode_status(jobs.not_yet(exc))
            return [{"status": status, "handle": None, "tried": False} for _ in entries]
        chosen = slurm.sbatch_spawn(spec, write_local)
    tried: set[Path] = set()

    def spawn(dirs: list[Path]) -> list[Any]:
        tried.update(dirs)
        return chosen(dirs)

    started = jobs.start(
        entries,
        request["launcher"],
        alive=_liveness(request["launcher"]),
        spawn=spawn,
        write=write_local,
    )
    return [
        {"status": encode_status(s), "handle": h, "tried": job_dir in tried}
        for (job_dir, _), (s, h) in zip(entries, started, strict=True)
    ]


def poll(request: PollRequest) -> list[PollAnswer]:
    """The status of each started job: its marker, else whether its process lives."""
    return [
        {"status": encode_status(jobs.poll(Path(j["dir"]), procs.handle_alive(j["handle"])))}
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


def cancel(request: CancelRequest) -> CancelAnswer:
    """SIGTERM each live job's process group; SIGKILL what is left of the groups after
    ``grace`` seconds. A job killed that way leaves no marker of its own: it gets a
    ``killed`` one (in its directory, aligned with its handle)."""
    grace = float(request.get("grace", CANCEL_GRACE))
    groups: list[tuple[Any, str]] = []
    for handle, job_dir in zip(request["handles"], request["dirs"], strict=True):
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
    killed: list[tuple[Any, str]] = []
    for handle, job_dir in groups:
        if handle["pid"] in alive:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(handle["pid"], signal.SIGKILL)
                killed.append((handle, job_dir))
    deadline = time.monotonic() + 5.0
    pgids = {h["pid"] for h, _ in killed}
    while _groups_alive(pgids) and time.monotonic() < deadline:
        time.sleep(0.02)
    failure = Failure(
        FailureReason.KILLED,
        f"cancelled: killed by SIGKILL after {grace:g} s (SIGTERM was not enough)",
        signal="SIGKILL",
    )
    for handle, job_dir in killed:
        if not procs.handle_alive(handle) and final_state(Path(job_dir)) is None:
            write_failed(Path(job_dir), failure)
    return {"killed": [h["pid"] for h, _ in killed]}


def fail(request: FailRequest) -> dict[str, Any]:
    """Write each job's ``failed`` marker."""
    for job in request["jobs"]:
        write_failed(Path(job["dir"]), Failure.from_json(job["failure"]))
    return {}


def pack(request: PackRequest) -> PackAnswer:
    """One poll cycle of a pack pool (see :mod:`corral.host.pack_agent`)."""
    from corral.host import pack_agent

    return pack_agent.command(request)


def inspect(request: InspectRequest) -> list[WireStatus]:
    """Each directory's final status (from the markers), or null."""
    return [encode_status(final_state(Path(d))) for d in request["dirs"]]


_HANDLERS: dict[str, Callable[[Any], Any]] = {
    "version": version,
    "recover": recover,
    "start": start,
    "poll": poll,
    "cancel": cancel,
    "fail": fail,
    "inspect": inspect,
    "pack": pack,
}
assert tuple(_HANDLERS) == COMMANDS


def answer(command: str, request: Any) -> Any:
    """The answer to ``command`` with ``request``, as JSON would carry both (the in-process
    call of a launcher whose job directories are on this machine)."""
    return roundtrip(_HANDLERS[command](roundtrip(request)))


def main(argv: list[str] | None = None) -> int:
    """Read the request, run the command, print the answer."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] not in _HANDLERS:
        print(f"usage: python -m corral.host.agent {'|'.join(COMMANDS)}", file=sys.stderr)
        return 2
    # The client may vanish mid-command (killed, connection dropped): finish the work anyway,
    # so that a job submitted is always recorded as submitted.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    raw = sys.stdin.read()
    request = json.loads(raw) if raw.strip() else {}
    result = _HANDLERS[args[0]](request)
    with contextlib.suppress(OSError):
        json.dump(result, sys.stdout)
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
