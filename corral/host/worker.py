"""A pack worker: ``python -m corral.host.worker POOL --slots N [--gpus G] [--idle S]``.

Runs in one allocation (a SLURM array task) and serves the pool's queue
(:mod:`corral.host.pack`): it claims a ready job whose dependencies are done and that fits
its free slots, GPUs and remaining time, runs it, and claims the next; it leaves when it was
idle ``--idle`` seconds, when its allocation's time left is shorter than every ready job's
declared time, or on SIGTERM (its jobs, stopped by the same signal, are queued again by the
agent, not failed).

A job runs exactly as a job of its own would: in its directory, with its ``stdout`` and
``stderr``, its markers and its run lock. On the **fast path** the worker forks and the
child runs ``corral.run`` in-process (corral and the task's modules already imported: a
no-op task costs milliseconds); a job whose ``job.sh`` needs more than the worker's
environment gives (setup lines of its own, secrets, another interpreter, a distributed job)
runs ``bash job.sh`` instead. Every child gets SIGTERM when the worker dies
(``PR_SET_PDEATHSIG``), so no job outlives its worker unseen.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from corral.core.job import Failure, FailureReason, JobState
from corral.core.script import parse_job_script
from corral.core.workspace import LAUNCH, final_state, state_dir, write_failed, write_json_atomic
from corral.host import pack

_PR_SET_PDEATHSIG = 1
_NODE = socket.gethostname()
CANCEL_GRACE = 10.0
LIST_EVERY = 1.0
"""Seconds a listing of the queue serves while it still has entries."""


@dataclass
class Running:
    """A job this worker runs."""

    name: str
    entry: pack.Entry
    pid: int
    gpus: list[str]
    started: float
    cancelled_at: float | None = None


@dataclass
class Worker:
    """The state of one worker process."""

    pool: Path
    wid: str
    slots: int
    gpus: list[str]
    idle: float
    deadline: float | None
    running: dict[int, Running] = field(default_factory=dict)
    entries: dict[str, pack.Entry] = field(default_factory=dict)
    stopping: bool = False
    ran: int = 0
    names: list[str] = field(default_factory=list)
    """The queue as last listed: listing 10,000 entries at every claim would cost more than
    a claim of an entry another worker took meanwhile (a failed rename)."""
    listed: float = 0.0
    code: str | None = None
    """The code (snapshot and import roots) this process imported its task modules from:
    a job of other code runs as a script, never forked from here."""

    @property
    def free_slots(self) -> int:
        """Slots not taken by a running job."""
        return self.slots - sum(r.entry.cpus for r in self.running.values())

    @property
    def free_gpus(self) -> list[str]:
        """GPUs not given to a running job."""
        used = {g for r in self.running.values() for g in r.gpus}
        return [g for g in self.gpus if g not in used]


def _worker_id() -> str:
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array and task:
        return f"{array}_{task}"
    job = os.environ.get("SLURM_JOB_ID")
    return job or f"{socket.gethostname()}-{os.getpid()}"


def _deadline(time_limit: float | None) -> float | None:
    end = os.environ.get("SLURM_JOB_END_TIME")
    if end and end.isdigit():
        return float(end)
    return time.time() + time_limit if time_limit else None


def _allocation_gpus(count: int) -> list[str]:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible:
        return [g for g in visible.split(",") if g][:count] if count else visible.split(",")
    return [str(i) for i in range(count)]


def _dependencies_state(entry: pack.Entry) -> str:
    """``done`` when every dependency is done, ``failed`` when one failed, else ``wait``."""
    for dep in entry.deps:
        final = final_state(Path(dep))
        if final is None:
            return "wait"
        if final[0] is JobState.FAILED:
            return "failed"
    return "done"


def _fast_path(job_dir: Path) -> dict[str, str] | None:
    """The variables ``job.sh`` exports, when the worker may run it in a forked process;
    None when it must run as a script."""
    try:
        text = (job_dir / "job.sh").read_text(encoding="utf-8")
    except OSError:
        return None
    info = parse_job_script(text)
    same_python = info.python is not None and os.path.realpath(
        _which(info.python)
    ) == os.path.realpath(sys.executable)
    if not same_python or info.secrets or info.setup:
        return None
    return info.environ


def _which(program: str) -> str:
    if os.sep in program:
        return program
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        candidate = os.path.join(directory, program)
        if os.access(candidate, os.X_OK):
            return candidate
    return program


def _die_with_parent() -> None:
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def _launch(w: Worker, name: str, entry: pack.Entry) -> None:
    """Fork the job's process; everything else happens in the child, in parallel with the
    worker's next claims (the parent's work per job is a claim and a fork)."""
    gpus = w.free_gpus[: entry.gpus]
    if w.code is None:
        _preload(w, Path(entry.dir))
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the job: never returns
        _child(w, name, Path(entry.dir), gpus)
    w.running[pid] = Running(name, entry, pid, gpus, time.time())


def _code_key(job_dir: Path) -> str | None:
    try:
        data = json.loads((job_dir / "params.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return json.dumps([(data.get("snapshot") or {}).get("hash"), data.get("sys_path")])


def _preload(w: Worker, job_dir: Path) -> None:
    """Import the first job's task modules here, once: its children (and those of every
    job of the same code) start with them imported."""
    w.code = _code_key(job_dir) or "unusable"
    try:
        from corral.core.serialize import _import_path, _load_class

        data = json.loads((job_dir / "params.json").read_text(encoding="utf-8"))
        entries, moved = _import_path(data)
        for entry in reversed(entries):
            if entry not in sys.path:
                sys.path.insert(0, entry)
        for obj in data.get("objects", []):
            _load_class(obj["class"], moved)
    except Exception:  # the job will say why in its own stderr; fork nothing from here
        w.code = "unusable"


def _child(w: Worker, name: str, job_dir: Path, gpus: list[str]) -> None:
    code = 70
    try:
        os.setsid()
        _die_with_parent()
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(signum, signal.SIG_DFL)
        handle = {"pack": str(w.pool), "entry": name, "worker": w.wid, "node": _NODE}
        state_dir(job_dir).mkdir(exist_ok=True)
        write_json_atomic(state_dir(job_dir) / LAUNCH, {"launcher": "slurm", "handle": handle})
        if gpus:
            os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
        environ = _fast_path(job_dir)
        if environ is None or _code_key(job_dir) != w.code:
            os.chdir(job_dir)  # a fresh interpreter, as a job of its own would have
            os.execvp("bash", ["bash", str(job_dir / "job.sh")])
        os.chdir(job_dir)
        for fd, log in ((1, "stdout"), (2, "stderr")):
            target = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(target, fd)
            os.close(target)
        os.environ.update(environ)
        os.environ["CORRAL_JOB_DIR"] = str(job_dir)
        from corral.host import runner

        code = runner.main(["params.json"])
    except BaseException:  # whatever happens, the child must not return
        import traceback

        traceback.print_exc()
    finally:
        with contextlib.suppress(BaseException):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _reap_children(w: Worker) -> None:
    while w.running:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        job = w.running.pop(pid, None)
        if job is None:
            continue
        job_dir = Path(job.entry.dir)
        if final_state(job_dir) is None:  # ended without its own marker (SIGKILL, crash)
            code = os.waitstatus_to_exitcode(status)
            why = f"ended without a result (exit {code})"
            if code < 0:
                why = f"killed by {signal.Signals(-code).name}"
            reason = FailureReason.KILLED if code < 0 else FailureReason.FAILED
            write_failed(job_dir, Failure(reason, why, exit_code=code))
        if w.stopping and _interrupted(job_dir) and not pack.cancel_requested(w.pool, job.name):
            # stopped by the worker's own end: the agent queues it again
            continue
        pack.release(w.pool, w.wid, job.name)
        w.ran += 1


def _interrupted(job_dir: Path) -> bool:
    final = final_state(job_dir)
    return final is not None and final[1] is not None and final[1].reason is FailureReason.KILLED


def _cancel_requested_jobs(w: Worker) -> None:
    now = time.time()
    for job in w.running.values():
        if job.cancelled_at is None and pack.cancel_requested(w.pool, job.name):
            job.cancelled_at = now
            with contextlib.suppress(ProcessLookupError):
                os.killpg(job.pid, signal.SIGTERM)
        elif job.cancelled_at is not None and now - job.cancelled_at > CANCEL_GRACE:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(job.pid, signal.SIGKILL)


def _claim_next(w: Worker) -> tuple[int, bool]:
    """Claim and start what fits; (jobs started, whether jobs are ready and none could ever
    run here: more slots, GPUs or time than this worker has)."""
    started, waiting, unfit = 0, False, 0
    left = w.deadline - time.time() if w.deadline is not None else None
    now = time.monotonic()
    if not w.names or now - w.listed > LIST_EVERY:
        w.names, w.listed = pack.ready_entries(w.pool), now
    names = list(w.names)
    for name in names:
        if w.free_slots <= 0:
            waiting = True
            break
        entry = w.entries.get(name) or pack.Entry.read(w.pool / pack.READY / name)
        if entry is None:  # taken by another worker since the listing
            w.names.remove(name)
            continue
        w.entries[name] = entry
        if entry.cpus > w.slots or entry.gpus > len(w.gpus):
            unfit += 1
            continue  # never fits this worker
        if left is not None and entry.time is not None and entry.time > left:
            unfit += 1
            continue  # not in the time this allocation has left
        waiting = True
        if entry.cpus > w.free_slots or entry.gpus > len(w.free_gpus):
            continue
        deps = _dependencies_state(entry)
        if deps == "wait":
            continue
        w.names.remove(name)
        if not pack.claim(w.pool, w.wid, name):
            w.entries.pop(name, None)
            continue
        w.entries.pop(name, None)
        if deps == "failed":
            failed = [d for d in entry.deps if (f := final_state(Path(d))) and f[1]]
            why = f"dependency failed: {', '.join(Path(d).name[:12] for d in failed)}"
            write_failed(Path(entry.dir), Failure(FailureReason.DEPENDENCY, why))
            pack.release(w.pool, w.wid, name)
            continue
        final = final_state(Path(entry.dir))
        if final is not None and final[0] is JobState.DONE:
            pack.release(w.pool, w.wid, name)  # done meanwhile (by an earlier attempt)
            continue
        _launch(w, name, entry)
        started += 1
    return started, unfit > 0 and not waiting


def serve(w: Worker) -> int:
    """The worker's loop; returns its exit code."""
    (w.pool / pack.CLAIMED / w.wid).mkdir(parents=True, exist_ok=True)

    def stop(signum: int, frame: Any) -> None:
        w.stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    # A child's end wakes the loop at once (sigtimedwait below), not at its next pause.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
    info = {"worker": w.wid, "node": socket.gethostname(), "pid": os.getpid(), "slots": w.slots}
    last_beat = 0.0
    last_work = time.monotonic()
    why = "stopped (SIGTERM)"
    pause = 0.005
    while True:
        now = time.monotonic()
        if now - last_beat >= pack.HEARTBEAT:
            pack.heartbeat(w.pool, w.wid, {**info, "running": len(w.running), "ran": w.ran})
            last_beat = now
        _reap_children(w)
        _cancel_requested_jobs(w)
        if w.stopping:
            for job in w.running.values():
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(job.pid, signal.SIGTERM)
            while w.running:
                _reap_children(w)
                time.sleep(0.05)
            break
        started, hopeless = _claim_next(w)
        if started or w.running:
            last_work = time.monotonic()
        elif hopeless:
            why = "no ready job fits what this allocation has left"
            break
        elif time.monotonic() - last_work > w.idle:
            why = f"idle for {w.idle:g} s"
            break
        pause = 0.002 if started else min(pause * 2, 0.5)
        signal.sigtimedwait({signal.SIGCHLD}, pause)
    pack.record_exit(w.pool, w.wid, w.ran, why)
    if not w.stopping:  # a worker stopped by SLURM leaves its claims to the agent
        pack.forget_worker(w.pool, w.wid)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments and serve the pool."""
    parser = argparse.ArgumentParser(prog="python -m corral.host.worker")
    parser.add_argument("pool", type=Path)
    parser.add_argument("--slots", type=int, default=1)
    parser.add_argument("--gpus", type=int, default=0)
    parser.add_argument("--idle", type=float, default=60.0)
    parser.add_argument("--time", type=float, default=None, help="seconds of the allocation")
    args = parser.parse_args(argv)
    import corral.host.runner  # noqa: F401  (imported once, for every forked job)

    worker = Worker(
        pool=args.pool,
        wid=_worker_id(),
        slots=args.slots,
        gpus=_allocation_gpus(args.gpus),
        idle=args.idle,
        deadline=_deadline(args.time),
    )
    print(json.dumps({"worker": worker.wid, "slots": worker.slots, "gpus": worker.gpus}),
          flush=True)
    return serve(worker)


if __name__ == "__main__":
    sys.exit(main())
