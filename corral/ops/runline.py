"""The one line a run prints at its end: what it submitted and where, what an earlier run
had done or still runs, and, when it does not wait, how to follow its jobs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from corral.core.job import JobState


def run_line(name: str, jobs: Sequence[Any], *, follow: str | None = None) -> str:
    """The one line that says what a run did: what it submitted and where, what an earlier
    run had done or still runs; ``follow``, for a run that does not wait, how to follow.

    ``jobs`` have a ``launcher`` (with ``submitted(jobs)``), a ``found`` state and a
    ``handle`` (None: never started).
    """
    before = [j for j in jobs if j.found is JobState.DONE]
    attached = [j for j in jobs if j.found is JobState.RUNNING]
    started = [j for j in jobs if j.found is None and j.handle is not None]
    unstarted = [j for j in jobs if j.found is None and j.handle is None]
    if jobs and len(before) == len(jobs):
        return f"corral: {name}: all {_count(before)} already done, nothing to run"
    by_launcher: dict[Any, list[Any]] = {}
    for job in started:
        by_launcher.setdefault(job.launcher, []).append(job)
    where = "; ".join(launcher.submitted(batch) for launcher, batch in by_launcher.items())
    parts = [f"submitted {_count(started)}" + (f" ({where})" if where else "")]
    if before:
        parts.append(f"{len(before)} already done")
    if attached:
        parts.append(f"{len(attached)} still running from an earlier run")
    if unstarted:
        parts.append(f"{len(unstarted)} not started")
    line = f"corral: {name}: " + ", ".join(parts)
    return line + (f"; {follow}" if follow else "")


def _count(jobs: Sequence[Any]) -> str:
    return f"{len(jobs)} job" + ("" if len(jobs) == 1 else "s")
