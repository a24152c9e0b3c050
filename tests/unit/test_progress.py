"""The progress display: live on a terminal (rich's recording console), log lines elsewhere."""

from __future__ import annotations

import io
import re
import time
from pathlib import Path

import pytest
from rich.console import Console

from corral.core.job import Failure, FailureReason, Job, JobState
from corral.ops.progress import Progress, _duration

WIDTH = 100


class Launcher:
    """What the display reads of a launcher."""

    def __init__(self, name, destination=None):
        self.name = name
        self.connector = type("Connector", (), {"destination": destination})()


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def make_jobs(count, launcher, task="Learn", start=0):
    jobs = []
    for i in range(start, start + count):
        ident = f"{i:02d}" + "ab" * 19
        jobs.append(Job(None, ident, f"pkg.{task}", Path(f"/ws/jobs/pkg.{task}/{ident}"), launcher))
    return jobs


def name(i, task="Learn"):
    return f"{task}/{i:02d}" + "ab" * 5


def terminal():
    return Console(record=True, force_terminal=True, width=WIDTH, color_system="truecolor")


def frame(console):
    """What was drawn since the last call."""
    return console.export_text(clear=True)


def redraw(progress, console):
    """What one refresh draws."""
    frame(console)
    progress.refresh()
    return frame(console)


def log_console():
    return Console(file=io.StringIO(), width=40)  # not a terminal; narrower than the lines


def lines_of(console):
    return console.file.getvalue().splitlines()


@pytest.fixture
def clock():
    return Clock()


def test_live_display_counts_running_and_failures(clock):
    local, cluster = Launcher("local"), Launcher("slurm")
    jobs = make_jobs(8, local) + make_jobs(4, cluster, task="Eval", start=8)
    console = terminal()
    progress = Progress(
        lambda: jobs, console=console, title="sweep", refresh_every=3600, clock=clock, max_running=3
    )
    with progress:
        assert "0/12 finished" in frame(console)
        for job in jobs[:6]:
            job.state = JobState.RUNNING
        clock.now = 10
        progress.refresh()
        for job in jobs[6:8]:
            job.state = JobState.RUNNING
        jobs[8].state = JobState.SUBMITTED
        clock.now = 40
        progress.refresh()
        jobs[0].state = JobState.DONE
        jobs[1].failure = Failure(
            FailureReason.OUT_OF_MEMORY, "Traceback (most recent call last):\nMemoryError: 24G"
        )
        jobs[1].state = JobState.FAILED
        clock.now = 75
        shown = redraw(progress, console)
    assert "\x1b[" not in shown  # the text, without its colours
    lines = shown.splitlines()
    assert re.match(r"sweep ━+.* 2/12 finished 1m15s$", lines[0])
    assert lines[1].split() == [
        "launcher",
        "waiting",
        "ready",
        "submitted",
        "running",
        "done",
        "failed",
    ]
    assert lines[2].split() == ["local", "0", "0", "0", "6", "1", "1"]
    assert lines[3].split() == ["slurm", "3", "0", "1", "0", "0", "0"]
    assert lines[4].split() == ["total", "3", "0", "1", "6", "1", "1"]
    assert lines[5] == "running"
    # longest-running first, a bounded list
    assert [line.split() for line in lines[6:9]] == [
        [name(2), "local", "1m05s"],
        [name(3), "local", "1m05s"],
        [name(4), "local", "1m05s"],
    ]
    assert lines[9].strip() == "+3 more"
    assert lines[10] == "failed"
    assert lines[11].split() == [name(1), "local", "oom", "MemoryError:", "24G"]
    assert lines[12].strip() == f"{jobs[1].stderr}"
    assert len(lines) == 13

    final = console.export_text()
    assert final.rstrip().splitlines()[-1] == (
        "corral: sweep: 12 jobs in 1m15s: 3 waiting, 1 submitted, 6 running, 1 done, 1 failed"
        " (local: 6 running, 1 done, 1 failed; slurm: 3 waiting, 1 submitted)"
    )


def test_running_jobs_longest_first_with_their_elapsed_time(clock):
    jobs = make_jobs(4, Launcher("local"))
    console = terminal()
    with Progress(lambda: jobs, console=console, refresh_every=3600, clock=clock) as progress:
        for i, job in enumerate(reversed(jobs)):  # jobs[3] starts first, jobs[0] last
            job.state = JobState.RUNNING
            clock.now = 30 * i
            progress.refresh()
        clock.now = 3725
        lines = redraw(progress, console).splitlines()
    start = lines.index("running") + 1
    assert [line.split() for line in lines[start : start + 4]] == [
        [name(3), "local", "1h02m"],
        [name(2), "local", "1h01m"],
        [name(1), "local", "1h01m"],
        [name(0), "local", "1h00m"],
    ]


def test_failures_root_causes_first_then_more(clock):
    jobs = make_jobs(5, Launcher("local"))
    console = terminal()
    with Progress(
        lambda: jobs, console=console, refresh_every=3600, clock=clock, max_failures=2
    ) as progress:
        for job in jobs[:4]:
            job.failure = Failure(FailureReason.DEPENDENCY, f"dependency failed: {name(4)}")
            job.state = JobState.FAILED
        progress.refresh()
        jobs[4].failure = Failure(FailureReason.FAILED, "ValueError: lr must be positive")
        jobs[4].state = JobState.FAILED
        lines = redraw(progress, console).splitlines()
    start = lines.index("failed") + 1
    assert lines[start].split() == [
        name(4),
        "local",
        "failed",
        "ValueError:",
        "lr",
        "must",
        "be",
        "positive",
    ]
    assert lines[start + 1].strip() == str(jobs[4].stderr)
    assert lines[start + 2].split()[:3] == [name(0), "local", "dependency"]
    assert lines[start + 4].strip() == "+3 more (3 because of a dependency)"


def test_a_growing_job_list_is_followed_by_the_thread():
    launcher = Launcher("local")
    xp_jobs: dict[str, Job] = {}
    console = terminal()
    with Progress(lambda: xp_jobs.values(), console=console, refresh_every=0.01):
        for job in make_jobs(50, launcher):
            xp_jobs[job.identifier] = job  # the scheduler's thread is not involved
        for job in xp_jobs.values():
            job.state = JobState.DONE
        deadline = time.monotonic() + 10
        while "50/50 finished" not in console.export_text(clear=True):
            assert time.monotonic() < deadline, "the display never showed the 50 jobs"
            time.sleep(0.01)
    assert console.export_text().rstrip().endswith("50 jobs in 0s: 50 done")


def test_launchers_with_one_name_are_told_apart_by_destination(clock):
    jobs = make_jobs(1, Launcher("ssh", "alice@gpu1")) + make_jobs(
        1, Launcher("ssh", "gpu2"), start=1
    )
    console = terminal()
    with Progress(lambda: jobs, console=console, refresh_every=3600, clock=clock):
        lines = frame(console).splitlines()
    assert [line.split()[0] for line in lines[2:5]] == ["ssh:alice@gpu1", "ssh:gpu2", "total"]


def test_log_lines_when_stdout_is_not_a_terminal(clock):
    local = Launcher("local")
    jobs = make_jobs(3, local)
    console = log_console()
    progress = Progress(
        lambda: jobs, console=console, title="sweep", clock=clock, refresh_every=3600
    )
    assert not progress.live
    with progress:
        for job in jobs:
            job.state = JobState.RUNNING
        progress.refresh()
        clock.now = 62
        jobs[0].state = JobState.DONE
        progress.refresh()  # a line for the job; a summary (60 s have passed)
        clock.now = 70
        jobs[1].state = JobState.FAILED  # the failure is set right after the state...
        progress.refresh()
        jobs[1].failure = Failure(FailureReason.FAILED, "ValueError: " + "x" * 60)
        clock.now = 71
        progress.refresh()  # ...so its line waits until the reason is known
        progress.refresh()
    lines = lines_of(console)
    stamp = r"\[\d\d:\d\d:\d\d\] "
    assert len(lines) == 4, lines
    assert re.fullmatch(stamp + rf"done    {name(0)}  local  1m02s", lines[0])
    assert re.fullmatch(stamp + r"sweep: 3 jobs in 1m02s: 2 running, 1 done", lines[1])
    assert re.fullmatch(
        stamp
        + rf"failed  {name(1)}  local  1m11s  failed: ValueError: x{{60}}  "
        + re.escape(f"stderr: {jobs[1].stderr}"),
        lines[2],
    )  # one line however long, without colours
    assert lines[3] == "corral: sweep: 3 jobs in 1m11s: 1 running, 1 done, 1 failed"


def test_summary_lines_are_rate_limited_and_only_on_change(clock):
    jobs = make_jobs(10, Launcher("local"))
    console = log_console()
    with Progress(
        lambda: jobs, console=console, clock=clock, refresh_every=3600, summary_every=30
    ) as progress:
        for i, job in enumerate(jobs):
            job.state = JobState.RUNNING
            clock.now = 10 * (i + 1)  # a change every 10 s: a summary every 30 s
            progress.refresh()
        clock.now = 1000
        progress.refresh()
        clock.now = 2000  # nothing changed: no summary
        progress.refresh()
    summaries = [line for line in lines_of(console) if " jobs in " in line]
    assert [s.split("] ", 1)[-1] for s in summaries] == [
        "10 jobs in 30s: 7 waiting, 3 running",
        "10 jobs in 1m00s: 4 waiting, 6 running",
        "10 jobs in 1m30s: 1 waiting, 9 running",
        "10 jobs in 16m40s: 10 running",
        "corral: 10 jobs in 33m20s: 10 running",
    ]


def test_jobs_found_done_are_counted_not_listed(clock):
    jobs = make_jobs(3, Launcher("local"))
    for job in jobs:
        job.state = JobState.DONE  # an earlier run did them
    console = log_console()
    with Progress(lambda: jobs, console=console, clock=clock, refresh_every=3600):
        pass
    assert lines_of(console) == ["corral: 3 jobs in 0s: 3 done"]


@pytest.mark.parametrize("console", [terminal(), log_console()], ids=["terminal", "log"])
def test_quiet_prints_nothing_but_failures(console, clock):
    jobs = make_jobs(3, Launcher("local"))
    with Progress(lambda: jobs, console=console, quiet=True, clock=clock, refresh_every=3600) as p:
        jobs[0].state = JobState.RUNNING
        clock.now = 100
        p.refresh()
        jobs[0].state = JobState.DONE
        jobs[1].failure = Failure(FailureReason.KILLED, "killed by SIGKILL")
        jobs[1].state = JobState.FAILED
        p.refresh()
    text = console.export_text() if console.record else console.file.getvalue()
    lines = text.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].endswith(
        f"failed  {name(1)}  local  killed: killed by SIGKILL  stderr: {jobs[1].stderr}"
    )


def test_an_error_of_the_thread_surfaces_on_stop():
    calls = []

    def jobs():
        calls.append(1)
        if len(calls) > 1:
            raise ValueError("no jobs")
        return []

    progress = Progress(jobs, console=log_console(), refresh_every=0.01)
    progress.start()
    deadline = time.monotonic() + 10
    while len(calls) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    with pytest.raises(ValueError, match="no jobs"):
        progress.stop()


def test_an_error_in_the_block_is_not_hidden_by_the_display():
    calls = []

    def jobs():
        calls.append(1)
        if len(calls) > 1:
            raise ValueError("display")
        return []

    with pytest.raises(KeyError):
        with Progress(jobs, console=log_console(), refresh_every=0.01):
            time.sleep(0.05)
            raise KeyError("the block's own")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (59.9, "59s"), (60, "1m00s"), (3599, "59m59s"), (3600, "1h00m"), (90061, "25h01m")],
)
def test_duration(seconds, text):
    assert _duration(seconds) == text
