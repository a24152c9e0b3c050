"""Cancel: SIGTERM to the job's process group, SIGKILL to what is left after the grace."""

from __future__ import annotations

import time
from pathlib import Path

from corral.core import procs
from corral.core.job import FailureReason, JobState
from corral.core.workspace import Workspace
from corral.launchers.local import LocalLauncher
from corral.testing import make_job, run_until_final
from tests.execution.spawn_tasks import SpawnAndSleep


def alive(pid: int) -> bool:
    fields = procs._stat(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def wait_for(path: Path, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while not path.exists() or not path.read_text():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)
    return path.read_text()


def test_cancel_kills_a_child_that_ignores_sigterm(tmp_path):
    workspace = Workspace(tmp_path / "ws")
    launcher = LocalLauncher(cpu_slots=1, slots_dir=tmp_path / "slots", cancel_grace=1.0)
    job = make_job(SpawnAndSleep(token="local"), launcher, workspace)
    launcher.start([job], workspace)
    child = int(wait_for(job.directory / "child.pid"))
    assert alive(child)
    started = time.monotonic()
    launcher.cancel([job])
    assert time.monotonic() - started >= 1.0  # the child outlived SIGTERM: the grace ran out
    assert not alive(child)
    state, failure = run_until_final(launcher, job)
    assert state is JobState.FAILED
    assert failure is not None and failure.reason is FailureReason.KILLED
    assert failure.message == "killed by SIGTERM"  # the job itself ended on SIGTERM


def test_cancel_does_not_wait_for_a_group_that_ends_on_sigterm(tmp_path):
    from corral.testing.tasks import Sleep

    workspace = Workspace(tmp_path / "ws")
    launcher = LocalLauncher(cpu_slots=1, slots_dir=tmp_path / "slots", cancel_grace=30.0)
    job = make_job(Sleep(seconds=60, token="quick-cancel"), launcher, workspace)
    launcher.start([job], workspace)
    deadline = time.monotonic() + 30
    while not (job.directory / ".corral" / "run.lock").exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    started = time.monotonic()
    launcher.cancel([job])
    assert time.monotonic() - started < 10
    assert run_until_final(launcher, job)[0] is JobState.FAILED
