"""Pack workers run by hand on this machine (no SLURM): claims, dependencies, the fast path,
a worker killed with SIGKILL, a cancelled job. The SLURM side is in
tests/integration/test_pack_slurm.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from corral.core.job import FailureReason, JobState
from corral.core.workspace import Workspace, final_state, read_json
from corral.host import pack
from corral.launchers.local import LocalLauncher
from corral.testing import make_job
from tests.execution.model_tasks import AfterAppend, Append, CleansUp


def write_jobs(tmp_path: Path, tasks, deps=None) -> list:
    workspace = Workspace(tmp_path / "ws")
    launcher = LocalLauncher(cpu_slots=1)
    jobs = []
    for task in tasks:
        job = make_job(task, launcher, workspace)
        for name, text in launcher.job_files(job, workspace).items():
            path = job.directory / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        jobs.append(job)
    return jobs


def queue(pool: Path, jobs, deps=None) -> None:
    deps = deps or {}
    pack.enqueue(pool, [
        pack.Entry(dir=str(j.directory), deps=[str(d.directory) for d in deps.get(i, [])])
        for i, j in enumerate(jobs)
    ])


def worker(pool: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "corral.host.worker", str(pool), *args],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )


def finish(proc: subprocess.Popen) -> int:
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    return proc.returncode


def wait_for(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_worker_runs_each_job_once_in_its_own_directory_dependencies_first(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    first = Append(token="first", seconds=0.3, out=str(out))
    tasks = [first, *(Append(token=f"t{i}", out=str(out)) for i in range(8))]
    after = AfterAppend(before=first, out=str(out))
    jobs = write_jobs(tmp_path, [after, *tasks])  # the dependent is first in the queue
    pool = tmp_path / "pool"
    queue(pool, jobs, deps={0: [jobs[1]]})
    proc = worker(pool, "--slots", "3", "--idle", "1")
    finish(proc)
    for job in jobs:
        assert final_state(job.directory) == (JobState.DONE, None), job.directory
        launch = read_json(job.directory / ".corral" / "launch.json")
        assert launch["handle"]["worker"] == f"{os.uname().nodename}-{proc.pid}"
    lines = {p.name: p.read_text() for p in out.iterdir()}
    assert len(lines) == 9 and all(text.count("\n") == 1 for text in lines.values())
    assert (jobs[0].directory / "seen.txt").read_text() == "first\n"  # ran after its parent
    assert (jobs[1].directory / "stdout").exists() and (jobs[1].directory / "stderr").exists()
    assert pack.claimed_entries(pool) == {} and pack.ready_entries(pool) == []
    note = pack.exits(pool)[f"{os.uname().nodename}-{proc.pid}"]
    assert note == {"ran": 10, "why": "idle for 1 s"}


def test_a_failed_dependency_ends_its_dependent_without_running_it(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    parent = Append(token="bad", fail=True, out=str(out))
    jobs = write_jobs(tmp_path, [parent, AfterAppend(before=parent, out=str(out))])
    pool = tmp_path / "pool"
    queue(pool, jobs, deps={1: [jobs[0]]})
    finish(worker(pool, "--slots", "2", "--idle", "1"))
    assert final_state(jobs[0].directory)[1].reason is FailureReason.FAILED
    failure = final_state(jobs[1].directory)[1]
    assert failure.reason is FailureReason.DEPENDENCY
    assert failure.message == f"dependency failed: {jobs[0].directory.name[:12]}"
    assert not (jobs[1].directory / "stdout").exists()  # never started


def test_a_worker_killed_with_sigkill_leaves_its_job_to_another_worker(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (job,) = write_jobs(tmp_path, [Append(token="slow", seconds=3, out=str(out))])
    pool = tmp_path / "pool"
    queue(pool, [job])
    first = worker(pool, "--slots", "1", "--idle", "1")
    wait_for(lambda: (job.directory / "started").exists())
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=30)
    # its child got SIGTERM (PR_SET_PDEATHSIG) and ended `killed`, not done
    wait_for(lambda: final_state(job.directory) is not None)
    assert final_state(job.directory)[1].reason is FailureReason.KILLED
    wid = f"{os.uname().nodename}-{first.pid}"
    assert pack.reap(pool, {wid}) == {pack.entry_name(job.directory): "requeued"}
    finish(worker(pool, "--slots", "1", "--idle", "1"))
    assert final_state(job.directory) == (JobState.DONE, None)
    assert (out / job.directory.name).read_text() == "slow\n"  # once
    assert (job.directory / "stdout.1").exists() or (job.directory / "stderr").exists()


def test_a_cancelled_job_cleans_up_and_ends_killed_while_its_worker_goes_on(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    jobs = write_jobs(tmp_path, [CleansUp(token="packed"), Append(token="next", out=str(out))])
    pool = tmp_path / "pool"
    queue(pool, jobs[:1])
    proc = worker(pool, "--slots", "1", "--idle", "2")
    wait_for(lambda: (jobs[0].directory / "started").exists())
    assert not pack.request_cancel(pool, pack.entry_name(jobs[0].directory))  # it runs
    wait_for(lambda: final_state(jobs[0].directory) is not None)
    assert (jobs[0].directory / "cleaned.txt").read_text() == "SIGTERM: cancelled by SIGTERM"
    assert final_state(jobs[0].directory)[1].reason is FailureReason.KILLED
    queue(pool, jobs[1:])  # the worker is still there for the next job
    finish(proc)
    assert final_state(jobs[1].directory) == (JobState.DONE, None)
