"""A failure scenario run twice: what fails, what is not run, and what a re-run runs again.

Each run submits a sibling that succeeds, a task that fails the way it is told to
(:class:`~tests.execution.tasks.Misbehave`) and a task depending on it. The re-run comes
after the cause is fixed: only the failed task and its dependent may run in it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from corral import JobFailedError, experiment
from corral.core.job import Job, JobState
from tests.execution.tasks import After, Misbehave, Record, read_log


@dataclass
class Reruns:
    reasons: dict[str, str]
    """The first run's failure reasons, by task class name."""
    first: list[str]
    """What ran in the first run (the log's names, in order)."""
    second: list[str]
    """What ran in the re-run."""


def fail_then_rerun(
    workdir: Path, launcher: Any, how: str, *, while_running: Callable[[Job], None] | None = None
) -> Reruns:
    """Run the scenario, then fix the cause and run it again in the same workspace.

    ``while_running(job)`` is called (in a thread) once the misbehaving job runs.
    """
    log, fixed = workdir / "log", workdir / "fixed"

    def submit_all() -> Misbehave:
        bad = Misbehave(name="bad", how=how, fixed=str(fixed), log=log)
        Record(name="ok", log=log).submit()
        bad.submit()
        After(before=bad, log=log).submit()
        return bad

    with pytest.raises(JobFailedError) as e:
        with experiment(workdir / "ws", "rerun", launcher=launcher) as xp:
            submit_all()
            if while_running is not None:
                threading.Thread(
                    target=_when_running, args=(xp, while_running), daemon=True
                ).start()
    reasons = {f.task.rsplit(".", 1)[-1]: f.reason for f in e.value.failures}
    first = [r["name"] for r in read_log(log)]
    fixed.touch()
    with experiment(workdir / "ws", "rerun", launcher=launcher):
        submit_all()
    second = [r["name"] for r in read_log(log)][len(first):]
    return Reruns(reasons, first, second)


def _when_running(xp: Any, act: Callable[[Job], None]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for job in list(xp.jobs.values()):
            if isinstance(job.task, Misbehave) and job.state is JobState.RUNNING:
                act(job)
                return
        time.sleep(0.1)


def check(runs: Reruns, how: str, reason: str) -> None:
    """The failed task has ``reason``, its dependent ``dependency`` and never ran; the re-run
    ran the failed task and its dependent, not the sibling that succeeded."""
    assert runs.reasons == {"Misbehave": reason, "After": "dependency"}
    assert sorted(runs.first) == [f"misbehave-{how}", "ok"]
    assert sorted(runs.second) == ["after", "bad"]
