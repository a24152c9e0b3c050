"""The one line a run ends with: what it submitted and where, and what it found done."""

from __future__ import annotations

from types import SimpleNamespace

from corral.core.job import JobState
from corral.ops.runline import run_line


class Place:
    def __init__(self, said: str) -> None:
        self.said = said

    def submitted(self, jobs) -> str:
        return f"{self.said} x{len(jobs)}"


def job(launcher, found=None, handle=None):
    return SimpleNamespace(launcher=launcher, found=found, handle=handle)


def test_what_was_submitted_where_and_what_was_found():
    slurm, local = Place("SLURM array 1234 on cluster"), Place("local")
    jobs = (
        [job(slurm, handle={"id": f"1234_{i}"}) for i in range(3)]
        + [job(local, handle={"pid": 1})]
        + [job(slurm, found=JobState.DONE) for _ in range(2)]
        + [job(slurm, found=JobState.RUNNING, handle={"id": "99_0"})]
        + [job(slurm)]
    )
    assert run_line("sweep", jobs) == (
        "corral: sweep: submitted 4 jobs (SLURM array 1234 on cluster x3; local x1), "
        "2 already done, 1 still running from an earlier run, 1 not started"
    )


def test_all_done_already():
    jobs = [job(Place("local"), found=JobState.DONE) for _ in range(12)]
    assert run_line("sweep", jobs) == "corral: sweep: all 12 jobs already done, nothing to run"
    assert run_line("one", jobs[:1]) == "corral: one: all 1 job already done, nothing to run"


def test_a_run_that_does_not_wait_says_how_to_follow():
    jobs = [job(Place("local"), handle={"pid": 1})]
    assert run_line("bg", jobs, follow="follow them with: corral xp wait bg -w ws") == (
        "corral: bg: submitted 1 job (local x1); follow them with: corral xp wait bg -w ws"
    )
