"""ResumableTask on the local launcher: resume_later(), retries, logs per attempt."""

from __future__ import annotations

import json

import pytest

from corral import Job, JobFailedError, Launcher, SubmitHook, experiment
from corral.launchers.local import LocalLauncher
from tests.execution.resumable_tasks import Steps


class time_limit(SubmitHook):  # used as a decorator, like the seed's needs_java
    def __init__(self, seconds: int) -> None:
        self.seconds = seconds

    def spec(self) -> int:
        return self.seconds

    def process(self, job: Job, launcher: Launcher) -> None:
        job.environ["CORRAL_TIME_LIMIT"] = str(self.seconds)


@time_limit(3600)
class LimitedSteps(Steps):
    pass


def test_a_task_that_resumes_later_runs_again_from_its_checkpoint(tmp_path):
    log = tmp_path / "log"
    task = Steps(steps=5, stop_after=2, log=str(log))
    with experiment(tmp_path / "ws", "resume", launcher=LocalLauncher(cpu_slots=1)) as xp:
        task.submit()
    (job,) = xp.jobs.values()
    attempts = [json.loads(line) for line in log.read_text().splitlines()]
    assert [a.get("resumed_at") for a in attempts] == [0, 2, 4]
    assert attempts[-1]["finished"] == 5
    assert job.retries == 2
    # the logs of the first attempts are kept
    assert {p.name for p in task.__taskdir__.iterdir()} >= {"stdout.1", "stderr.1", "stdout.2"}


def test_retries_are_bounded(tmp_path):
    log = tmp_path / "log"
    with pytest.raises(JobFailedError) as e:
        with experiment(tmp_path / "ws", "bounded", launcher=LocalLauncher(cpu_slots=1)):
            Steps(steps=100, stop_after=1, log=str(log)).submit()
    (failure,) = e.value.failures
    assert failure.reason == "timeout"
    assert len(log.read_text().splitlines()) == 1 + Steps.max_retries


def test_remaining_time_counts_down_from_the_jobs_limit(tmp_path):
    log = tmp_path / "log"
    with experiment(tmp_path / "ws", "remaining", launcher=LocalLauncher(cpu_slots=1)):
        LimitedSteps(steps=1, log=str(log)).submit()
        Steps(steps=1, log=str(log) + "2").submit()
    (limited,) = [json.loads(line) for line in log.read_text().splitlines()]
    assert 3590 < limited["remaining"] <= 3600
    (unlimited,) = [json.loads(line) for line in (tmp_path / "log2").read_text().splitlines()]
    assert unlimited["remaining"] is None
