"""What runs inside a job: rebuild the config, wait for dependencies, lease slots, execute.

The job holds ``.corral/run.lock`` while it runs and writes its ``done`` or ``failed`` marker
before the lock is released (at process exit), so a reader that can take the lock and finds
no marker knows the job is gone. The lock file holds the handle of the process holding it.

A distributed job's process coordinates its ranks instead of executing the task itself
(:mod:`corral.host.ranks`); each rank is ``python -m corral.run --rank params.json``.

A stop signal (SIGTERM, SIGINT, SIGHUP) raises :class:`~corral.core.task.TaskCancelled` in
the task, which may clean up; the job then ends as ``killed``.
A :class:`~corral.core.resumable.ResumableTask` is not interrupted by SIGTERM (preemption,
``scancel``): it is told (``time_is_up()``), saves its progress and calls ``resume_later()``;
a batch scheduler ends it for good after its grace period.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from corral.core import procs, resumable, slots
from corral.core.job import Failure, FailureReason, JobState
from corral.core.task import TaskCancelled
from corral.core.workspace import (
    LAUNCH,
    RUN_LOCK,
    final_state,
    read_json,
    state_dir,
    write_done,
    write_failed,
)

ALREADY_RUNNING = 75
RESUME_LATER = 124  # like timeout(1): the attempt ended for its time limit
HOLDER_SIZE = 160  # bytes of the run lock's content: the handle of the process holding it
CAUGHT_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class _DependencyFailed(Exception):
    pass


class _ImportFailed(Exception):
    pass


_cancelled: TaskCancelled | None = None


def _on_signal(signum: int, frame: FrameType | None) -> None:
    global _cancelled
    if _cancelled is not None:  # asked again while cleaning up: ends the cleanup too
        raise _cancelled
    _cancelled = TaskCancelled(signum, signal.Signals(signum).name)
    raise _cancelled


def wait_for_dependencies(workspace: Path, relpaths: list[str], max_pause: float = 2.0) -> None:
    """Block until every dependency is done; raise if one failed or vanished."""
    pause = 0.02
    pending = list(relpaths)
    while pending:
        still: list[str] = []
        for rel in pending:
            job_dir = workspace / rel
            final = final_state(job_dir)
            if final is None:
                launch = read_json(state_dir(job_dir) / LAUNCH) or {}
                if launch.get("launcher") == "local" and not procs.handle_alive(
                    launch.get("handle")
                ):
                    if final_state(job_dir) is None:
                        raise _DependencyFailed(f"dependency {rel} ended without a result")
                    still.append(rel)
                else:
                    still.append(rel)
            elif final[0] is JobState.FAILED:
                raise _DependencyFailed(f"dependency {rel} failed")
        pending = still
        if pending:
            time.sleep(pause)
            pause = min(pause * 1.5, max_pause)


def _lease_slots() -> list[slots.Lease]:
    leases = []
    cpu = os.environ.get("CORRAL_CPU_SLOTS")
    if cpu:
        leases.append(slots.acquire(*slots.parse(cpu)))
    gpu = os.environ.get("CORRAL_GPU_SLOTS")
    if gpu:
        lease = slots.acquire(*slots.parse(gpu))
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in lease.indices)
        leases.append(lease)
    return leases


def _last_line(exc: BaseException) -> str:
    return "".join(traceback.format_exception_only(type(exc), exc)).strip().splitlines()[-1]


def execute(
    data: dict[str, Any], job_dir: Path, started: float | None = None, rank: Any = None
) -> None:
    """Rebuild the task of ``params.json`` and run it in ``job_dir`` (as ``rank`` of a
    distributed job, whose coordinator waited for the dependencies)."""
    from corral.core import context
    from corral.core.serialize import load_params

    workspace = Path(data["workspace"])
    if rank is None:
        wait_for_dependencies(workspace, data.get("depends_on", []))
        _lease_slots()
    context.set_job_workspace(workspace)
    try:
        loaded = load_params(data)
    except (ImportError, AttributeError, OSError) as exc:  # missing class, unreadable script
        traceback.print_exc()
        raise _ImportFailed(_last_line(exc)) from exc
    task = loaded.root
    from corral.core.classinfo import class_info

    for config in loaded.own:
        for name in class_info(type(config)).generated:
            getattr(config, name).parent.mkdir(parents=True, exist_ok=True)
    if rank is not None:
        task.__dict__["__rank__"] = rank
    if isinstance(task, resumable.ResumableTask):
        resumable.prepare(started if started is not None else time.time())
        for signum in (signal.SIGTERM, signal.SIGINT):  # asked to stop: checkpoint first
            signal.signal(signum, _stop_requested)
    os.chdir(job_dir)
    for init in task.__dict__.get("_corral_init", ()):
        init.execute()
    task.execute()  # type: ignore[attr-defined]


def _stop_requested(signum: int, frame: FrameType | None) -> None:
    if resumable.stop_requested():  # asked twice: it ends now
        _on_signal(signum, frame)
    resumable.request_stop(signal.Signals(signum).name)


def attempt(run: Callable[[], None]) -> tuple[Failure | None, int]:
    """Run ``run``, SIGTERM/SIGINT/SIGHUP ending it as ``killed``; the failure it ended with
    (None: done) and the exit code to give."""
    global _cancelled
    _cancelled = None
    try:
        for signum in CAUGHT_SIGNALS:  # inside the try: a signal from now on is caught here
            signal.signal(signum, _on_signal)
        run()
        if _cancelled is not None:  # the task caught TaskCancelled and returned
            raise _cancelled
    except TaskCancelled as exc:
        name = exc.signal
        return Failure(FailureReason.KILLED, f"killed by {name}", signal=name), 128 + exc.signum
    except _DependencyFailed as exc:
        return Failure(FailureReason.DEPENDENCY, str(exc)), 1
    except _ImportFailed as exc:
        return Failure(FailureReason.IMPORT, str(exc), exit_code=1), 1
    except resumable.ResumeLater as exc:
        stopped = resumable.stop_requested()
        if stopped:  # on a signal: a batch scheduler's own reason (preempted...) decides
            why = f"stopped on {stopped} to resume later ({exc})"
            return Failure(FailureReason.KILLED, why, RESUME_LATER, signal=stopped), RESUME_LATER
        return Failure(FailureReason.TIMEOUT, str(exc), exit_code=RESUME_LATER), RESUME_LATER
    except SystemExit as exc:
        if exc.code in (None, 0):
            return None, 0
        return Failure(FailureReason.FAILED, f"SystemExit: {exc.code}", exit_code=1), 1
    except BaseException as exc:
        traceback.print_exc()
        return Failure(FailureReason.FAILED, _last_line(exc), exit_code=1), 1
    return None, 0


def _read_params(job_dir: Path, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((job_dir / name).read_text(encoding="utf-8"))
    return data


def rank_main(job_dir: Path, params: str) -> int:
    """``python -m corral.run --rank params.json``: one rank of a distributed job."""
    from corral.host import ranks

    rank = ranks.enter(job_dir)
    failure, code = attempt(lambda: execute(_read_params(job_dir, params), job_dir, rank=rank))
    for signum in CAUGHT_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    ranks.record(job_dir, rank, failure)
    sys.stderr.flush()
    return code


def main(argv: list[str] | None = None) -> int:
    """``python -m corral.run params.json``, run in the job directory."""
    args = sys.argv[1:] if argv is None else argv
    job_dir = Path(os.environ.get("CORRAL_JOB_DIR") or Path.cwd())
    if len(args) == 2 and args[0] == "--rank":
        return rank_main(job_dir, args[1])
    if len(args) != 1:
        print("usage: python -m corral.run [--rank] params.json", file=sys.stderr)
        return 2
    sd = state_dir(job_dir)
    sd.mkdir(parents=True, exist_ok=True)
    lock_fd = os.open(sd / RUN_LOCK, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"corral: job {job_dir} is already running", file=sys.stderr)
        return ALREADY_RUNNING
    # Who holds the lock, for a client whose launch record was never written (killed between
    # starting the job and recording it): see hostjobs.ended(). Padded to a fixed size, so a
    # reader never sees a shorter record mixed with a longer one from an earlier run.
    holder = json.dumps(procs.handle_for(os.getpid())).encode()
    os.pwrite(lock_fd, holder.ljust(max(len(holder), HOLDER_SIZE)), 0)
    from corral.host import ranks

    started = time.time()
    if ranks.distributed():

        def run() -> None:
            data = _read_params(job_dir, args[0])
            wait_for_dependencies(Path(data["workspace"]), data.get("depends_on", []))
            found, status = ranks.coordinate(job_dir, args[0], sys.executable)
            outcome.extend([found, status])

        outcome: list[Any] = []
        failure, code = attempt(run)
        if failure is None and outcome:
            failure, code = outcome
    else:
        failure, code = attempt(lambda: execute(_read_params(job_dir, args[0]), job_dir, started))
    for signum in CAUGHT_SIGNALS:  # the marker is written once, whatever arrives now
        signal.signal(signum, signal.SIG_IGN)
    if failure is None:
        write_done(job_dir, {"start": started, "end": time.time()})
        return 0
    write_failed(job_dir, failure)
    sys.stderr.flush()
    return code
