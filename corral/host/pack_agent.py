"""The host side of packing (:mod:`corral.host.pack`): the agent's ``pack`` command and the
packed ``start``, on a SLURM login node or an SSH host.

Each call reads the pool in one pass, finds which of its workers are still there, gives
back the claims of workers that ended, and starts workers when jobs wait and fewer than
asked are there. On SLURM (``backend: slurm``) workers are array tasks: one ``squeue`` says
which are queued or running, one ``sbatch`` submits more. On an SSH host (``backend:
process``) workers are detached processes of the host, known by pid and start time.
"""

from __future__ import annotations

import json
import math
import shlex
import time
import uuid
from pathlib import Path
from typing import Any

from corral.core.job import Deferred
from corral.core.workspace import read_json, write_local
from corral.errors import SubmissionError
from corral.host import pack
from corral.host.protocol import (
    PackAnswer,
    PackRequest,
    PackSpec,
    WorkerSpec,
    encode_status,
)
from corral.host.slurm import NAME_PREFIX, _run, states
from corral.host.slurm_text import ACTIVE, header


def worker_script(pool: Path, spec: WorkerSpec, count: int, name: str) -> str:
    """The sbatch script of an array of ``count`` workers of ``pool``."""
    lines = [
        f"--job-name={name}",
        f"--array=0-{count - 1}",
        f"--output={pool / 'logs' / '%A_%a.out'}",
        f"--error={pool / 'logs' / '%A_%a.out'}",
        *spec["options"],
    ]
    argv = [spec["python"], "-m", "corral.host.worker", str(pool), "--slots", str(spec["slots"]),
            "--gpus", str(spec["gpus"]), "--idle", str(spec["idle"])]
    if spec["time"]:
        argv += ["--time", str(spec["time"])]
    body = ["#!/usr/bin/env bash", *header(lines), *spec["setup"], "cd /",
            "exec " + " ".join(shlex.quote(a) for a in argv)]
    return "\n".join(body) + "\n"


def _arrays(pool: Path) -> list[dict[str, Any]]:
    data = read_json(pool / pack.ARRAYS)
    return data if isinstance(data, list) else []


def worker_ids(pool: Path) -> list[str]:
    """The SLURM ids of every worker ever submitted for the pool (array tasks)."""
    return [f"{a['id']}_{i}" for a in _arrays(pool) for i in range(int(a["n"]))]


def submit_workers(pool: Path, spec: WorkerSpec, count: int) -> str:
    """Submit an array of ``count`` workers (one sbatch); its SLURM id."""
    token = uuid.uuid4().hex[:12]
    script = pool / "arrays" / f"{token}.sh"
    write_local(script, worker_script(pool, spec, count, f"{NAME_PREFIX}pack-{token}"), 0o755)
    (pool / "logs").mkdir(parents=True, exist_ok=True)
    out = _run(["sbatch", "--parsable", str(script)])
    if out.returncode != 0:
        tail = (out.stderr.strip().splitlines() or [f"exit {out.returncode}"])[-1]
        raise SubmissionError(f"sbatch of {count} pack worker(s) failed: {tail}",
                              argv=out.args, returncode=out.returncode, stderr=out.stderr)
    slurm_id = out.stdout.strip().split(";")[0]
    arrays = [*_arrays(pool), {"id": slurm_id, "n": count, "time": time.time()}]
    write_local(pool / pack.ARRAYS, json.dumps(arrays), 0o644)
    return slurm_id


RESUBMIT_PAUSE = 10.0
"""Seconds after an array of workers that ran no job before the next one (doubling)."""


def _pause(pool: Path) -> float:
    """How long to wait before submitting workers: arrays in a row whose workers all left
    without running a job (their jobs need more than they have) back off, so a pool never
    floods the controller with allocations that do nothing."""
    arrays, notes = _arrays(pool), pack.exits(pool)
    idle_in_a_row = 0
    for array in reversed(arrays):
        workers = [notes.get(f"{array['id']}_{i}") for i in range(int(array["n"]))]
        if any(n is None for n in workers) or any(n and n.get("ran") for n in workers):
            break
        idle_in_a_row += 1
    if not arrays or idle_in_a_row == 0:
        return 0.0
    wait: float = min(600.0, RESUBMIT_PAUSE * 2.0 ** (idle_in_a_row - 1))
    last = float(arrays[-1]["time"])
    return max(0.0, last + wait - time.time())


STATES_EVERY = 10.0
"""Seconds a reading of the workers' SLURM states serves (one ``squeue`` for all clients'
poll cycles meanwhile): the controller is asked a few times a minute, not every second."""


def _worker_states(pool: Path, ids: list[str]) -> dict[str, str]:
    cache = pool / "states.json"
    data = read_json(cache)
    fresh = isinstance(data, dict) and time.time() - float(data.get("time", 0)) < STATES_EVERY
    if fresh and set(data.get("ids", [])) == set(ids):
        return dict(data["states"])
    known = states(ids)
    write_local(cache, json.dumps({"time": time.time(), "ids": ids, "states": known}), 0o644)
    return known


PROCESSES = "processes.json"


def _process_workers(pool: Path) -> list[dict[str, Any]]:
    data = read_json(pool / PROCESSES)
    return data if isinstance(data, list) else []


def start_processes(pool: Path, spec: WorkerSpec, count: int) -> None:
    """Start ``count`` workers as detached processes of this host (they outlive the agent
    and the SSH connection)."""
    import socket
    import subprocess

    from corral.core import procs

    argv = [spec["python"], "-m", "corral.host.worker", str(pool), "--slots", str(spec["slots"]),
            "--gpus", str(spec["gpus"]), "--idle", str(spec["idle"])]
    script = "".join(f"{line}\n" for line in spec["setup"])
    script += "cd / && exec " + " ".join(shlex.quote(a) for a in argv)
    (pool / "logs").mkdir(parents=True, exist_ok=True)
    started = _process_workers(pool)
    for _ in range(count):
        log = pool / "logs" / f"worker-{uuid.uuid4().hex[:8]}.out"
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                ["bash", "-c", script], stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                start_new_session=True, close_fds=True,
            )
        started.append({"wid": f"{socket.gethostname()}-{proc.pid}",
                        "handle": procs.handle_for(proc.pid)})
    write_local(pool / PROCESSES, json.dumps(started), 0o644)


def _process_cycle(pool: Path, spec: WorkerSpec) -> tuple[int, int, int, str]:
    from corral.core import procs

    known = _process_workers(pool)
    active = {w["wid"] for w in known if procs.handle_alive(w["handle"])}
    seen = set(pack.workers(pool)) | set(pack.claimed_entries(pool).values())
    ended = {w["wid"] for w in known if w["wid"] not in active and w["wid"] in seen}
    outcomes = pack.reap(pool, ended) if ended else {}
    requeued = sum(1 for o in outcomes.values() if o == "requeued")
    if len(known) != len(active):  # forget the workers that left
        write_local(pool / PROCESSES, json.dumps([w for w in known if w["wid"] in active]),
                    0o644)
    waiting = len(pack.ready_entries(pool))
    wanted = min(spec["max"], math.ceil(waiting / max(1, spec["slots"])))
    started = 0
    if wanted > len(active):
        started = wanted - len(active)
        start_processes(pool, spec, started)
    return len(active) + started, started, requeued, ""


def cycle(pool: Path, spec: WorkerSpec) -> tuple[int, int, int, str]:
    """Reap the workers that ended, start workers for waiting jobs: ``(workers queued or
    running, workers started now, jobs requeued, why they could not be)``. On SLURM,
    nothing is reaped nor submitted when SLURM does not answer."""
    if spec.get("backend") == "process":
        return _process_cycle(pool, spec)
    ids = worker_ids(pool)
    try:
        known = _worker_states(pool, ids)
    except Deferred as exc:
        return len(ids), 0, 0, str(exc)
    active = {i for i in ids if known.get(i) in ACTIVE}
    # A worker that wrote a heartbeat or holds claims, and that SLURM no longer runs.
    seen = set(pack.workers(pool)) | set(pack.claimed_entries(pool).values())
    ended = {w for w in seen if w in ids and w not in active}
    outcomes = pack.reap(pool, ended) if ended else {}
    requeued = sum(1 for o in outcomes.values() if o == "requeued")
    waiting = len(pack.ready_entries(pool))
    wanted = min(spec["max"], math.ceil(waiting / max(1, spec["slots"])))
    submitted, refused = 0, ""
    pause = _pause(pool)
    if wanted > len(active) and pause > 0:
        refused = f"the last workers ran no job; next ones in {pause:.0f} s"
    elif wanted > len(active):
        try:
            submit_workers(pool, spec, wanted - len(active))
            submitted = wanted - len(active)
        except SubmissionError as exc:  # over a limit, say: the next cycle tries again
            refused = str(exc)
    return len(active) + submitted, submitted, requeued, refused


def command(request: PackRequest) -> PackAnswer:
    """The agent's ``pack`` command: cancellations, one cycle, then every job's status."""
    pool = Path(request["pool"])
    for job_dir in request.get("cancel", []):
        pack.request_cancel(pool, pack.entry_name(Path(job_dir)))
    live, submitted, requeued, refused = cycle(pool, request["workers"])
    found = pack.status(pool, [Path(d) for d in request["dirs"]])
    return {
        "jobs": [{"status": encode_status(s), "worker": w} for s, w in found],
        "workers": live,
        "submitted": submitted,
        "requeued": requeued,
        "refused": refused,
    }


def enqueue_spawn(spec: PackSpec) -> Any:
    """A spawn for :func:`corral.host.jobs.start` that queues its batch for the pool's
    workers (and submits workers for them) instead of starting each job."""
    pool = Path(spec["pool"])

    def spawn(dirs: list[Path]) -> list[Any]:
        entries = []
        for job_dir in dirs:
            info = spec["jobs"][str(job_dir)]
            entries.append(pack.Entry(
                dir=str(job_dir), deps=list(info["deps"]), cpus=int(info["cpus"]),
                gpus=int(info["gpus"]), time=info["time"],
                max_attempts=int(info["max_attempts"]),
            ))
        handles = pack.enqueue(pool, entries)
        cycle(pool, spec["workers"])  # refused or unanswered: the next poll cycle submits
        return handles

    return spawn
