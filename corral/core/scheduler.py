"""The scheduler: one thread per experiment moving jobs through their states.

``waiting → ready → submitted → running → done | failed(reason)``. Each cycle it checks the
job directories of newly added jobs (done jobs are never re-run, running ones are
re-attached), starts ready jobs as far as each launcher has room, and polls each launcher
once for all its active jobs. A job whose dependency failed fails with reason
``dependency`` without running.

A job that ended for a reason its launcher's retry budget covers (a node that died, a
preemption; a :class:`~corral.core.resumable.ResumableTask`'s time limit) is made ready
again and submitted anew in the same directory, its ended attempts kept in ``job.attempts``;
its dependents wait meanwhile (a batch scheduler that cancelled them for it is overruled).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from functools import partial
from typing import TYPE_CHECKING, TypeVar

from corral.core.job import Failure, FailureReason, Job, JobState
from corral.core.pointer import is_remote, write_pointer
from corral.core.resumable import ResumableTask
from corral.errors import LoginNeeded

RESUMED_AFTER = (FailureReason.TIMEOUT, FailureReason.PREEMPTED)

if TYPE_CHECKING:
    from corral.core.launcher import Launcher, Status
    from corral.core.workspace import Workspace

log = logging.getLogger(__name__)

MIN_PAUSE = 0.05
LOGIN_RETRY = 10.0
"""Seconds between two tries of a host that waits for a person to log in again."""
T = TypeVar("T")
_ACTIVE = (JobState.SUBMITTED, JobState.RUNNING)


class Scheduler:
    """Drives the jobs of one experiment."""

    def __init__(
        self,
        workspace: Workspace,
        on_finished: Callable[[Job], None] | None = None,
    ) -> None:
        self.workspace = workspace
        self.on_finished = on_finished
        self.jobs: list[Job] = []
        self._new: list[Job] = []
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stop = False
        self._changed = False
        self._woken: set[Launcher] = set()
        self._interval: dict[Launcher, float] = {}
        self._due: dict[Launcher, float] = {}
        self._login: dict[Launcher, LoginNeeded | None] = {}
        self._last_add = 0.0
        self._flush = False  # the experiment waits or leaves: nothing more to gather
        self.error: BaseException | None = None
        self.halt: Callable[[], str | None] | None = None
        """Asked every cycle (at least once a second): a reason to start nothing more."""
        self.on_halt: Callable[[], None] | None = None
        """Called once nothing more will be started (no start is under way)."""
        self.halted: str | None = None

    # --- called from the experiment's thread ---------------------------------------------

    def add(self, job: Job) -> None:
        """Schedule ``job`` (its dependencies are already scheduled)."""
        launcher = job.launcher
        launcher.wake = lambda: self.wake(launcher)
        with self._cond:
            self.jobs.append(job)
            if self.halted is not None:  # started nothing more: nor this one
                job.state = JobState.FAILED
                job.failure = Failure(FailureReason.KILLED, f"not started: {self.halted}")
                self._cond.notify_all()
                return
            self._new.append(job)
            self._last_add = time.monotonic()
            self._flush = False
            self._cond.notify_all()
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="corral-scheduler", daemon=True)
            self._thread.start()

    def wake(self, launcher: Launcher | None = None) -> None:
        """Something changed (a process of ``launcher`` ended): run a cycle, poll it now."""
        with self._cond:
            self._changed = True
            if launcher is not None:
                self._woken.add(launcher)
            self._cond.notify_all()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every job is final; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            self._flush = True
            self._cond.notify_all()
            while not self._all_final():
                if self.error is not None:
                    raise self.error
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining if remaining is not None else 1.0)
        if self.error is not None:
            raise self.error
        return True

    def detach(self) -> None:
        """The client leaves: start every job not started yet and stop the thread.

        Jobs started this way wait for their dependencies and lease their slots themselves.
        """
        self.stop()
        if self.halted is not None:
            return
        with self._cond:
            pending = [j for j in self.jobs if j.state in (JobState.WAITING, JobState.READY)]
            new = list(self._new)
            self._new.clear()
        self._recover(new)
        pending = [j for j in self.jobs if j.state in (JobState.WAITING, JobState.READY)]
        failed = {j for j in pending if any(d.state is JobState.FAILED for d in j.dependencies)}
        self._fail_dependents(failed)
        for launcher, batch in _by_launcher(j for j in pending if j not in failed).items():
            self._apply(launcher.start(batch, self.workspace, detached=True))

    def stop(self) -> None:
        """Stop the scheduler thread (jobs already started go on)."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    # --- the scheduler thread --------------------------------------------------------------

    def _all_final(self) -> bool:
        return not self._new and all(j.state.final for j in self.jobs)

    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    if self._stop:
                        return
                    if self._all_final():
                        # with a stop to watch for, a cycle each second even when idle
                        watch = self.halt is not None and self.halted is None
                        self._cond.wait(1.0 if watch else None)
                        if not watch or self._stop:
                            continue
                    new = list(self._new)
                    self._new.clear()
                    self._changed = False
                changed = self._cycle(new)
                with self._cond:
                    self._cond.notify_all()
                    if changed or self._changed or self._stop:
                        continue  # something moved: look again at once
                    # at least once a second: what `halt` says is looked at in each cycle
                    self._cond.wait(min(self._next_due(), 1.0))
        except BaseException as exc:  # surfaced by wait() in the experiment's thread
            log.exception("scheduler failed")
            with self._cond:
                self.error = exc
                self._cond.notify_all()

    def _next_due(self) -> float:
        """Seconds until a launcher with active jobs is due for a poll."""
        active = {j.launcher for j in self.jobs if j.state in _ACTIVE}
        dues = [self._due.get(launcher, 0.0) for launcher in active]
        held = {j.launcher for j in self.jobs if j.state is JobState.READY}
        held |= {j.launcher for j in self._new}
        waiting = {launcher for launcher, login in self._login.items() if login is not None}
        dues += [self._due.get(launcher, 0.0) for launcher in held & waiting]
        dues += [self._last_add + launcher.gather_delay for launcher in held - waiting]
        return max(MIN_PAUSE, min(dues, default=time.monotonic() + 1.0) - time.monotonic())

    def _gathering(self, launcher: Launcher, now: float) -> bool:
        """Whether to hold ``launcher``'s ready jobs for more to come."""
        return not self._flush and now - self._last_add < launcher.gather_delay

    def _polled(self, launcher: Launcher, changed: bool) -> None:
        """Back off while nothing changes: min interval after a change, x1.5 up to the max."""
        if changed:
            interval = launcher.min_poll_interval
        else:
            interval = min(
                self._interval.get(launcher, launcher.min_poll_interval) * 1.5,
                launcher.poll_interval,
            )
        self._interval[launcher] = interval
        self._due[launcher] = time.monotonic() + interval

    def _cycle(self, new: list[Job]) -> bool:
        if self.halted is None and self.halt is not None:
            why = self.halt()
            if why is not None:
                self._halt(why, new)
                new = []
        now = time.monotonic()
        held = [j for j in new if self._gathering(j.launcher, now)]
        if held:  # recovered with the rest of their batch: one round trip, not one per cycle
            with self._cond:
                self._new[:0] = held
            new = [j for j in new if not self._gathering(j.launcher, now)]
        changed = self._recover(new)
        active = [j for j in self.jobs if j.state in _ACTIVE]
        now = time.monotonic()
        with self._cond:
            woken, self._woken = self._woken, set()
        for launcher, batch in _by_launcher(active).items():
            if launcher not in woken and self._due.get(launcher, 0.0) > now:
                continue
            # first, so that finished jobs free their slots
            statuses = self._reach(launcher, partial(launcher.poll, batch))
            if statuses is None:
                continue
            moved = self._apply(statuses, only_changes=True)
            self._polled(launcher, moved)
            changed = moved or changed
        waiting = [j for j in self.jobs if j.state in (JobState.WAITING, JobState.READY)]
        failed_deps = set()
        for job in waiting:
            if any(d.state is JobState.FAILED for d in job.dependencies):
                failed_deps.add(job)
            elif job.state is JobState.WAITING and all(
                d.state is JobState.DONE or (d.state in _ACTIVE and job.launcher.can_wait_for(d))
                for d in job.dependencies
            ):
                job.state = JobState.READY
                changed = True
        if failed_deps:
            self._fail_dependents(failed_deps)
            changed = True
        ready = [] if self.halted else [j for j in self.jobs if j.state is JobState.READY]
        for launcher, batch in _by_launcher(ready).items():
            if self._gathering(launcher, time.monotonic()):
                continue
            if self._login.get(launcher) is not None:
                continue  # its host waits for a login: submitting would ask for one too
            room = launcher.capacity(batch)
            batch = batch if room is None else batch[:room]
            if batch:
                started = self._reach(launcher, partial(launcher.start, batch, self.workspace))
                if started is None:
                    continue
                self._apply(started)
                self._polled(launcher, changed=True)
                changed = True
        return changed

    def _reach(self, launcher: Launcher, call: Callable[[], T]) -> T | None:
        """``call()``; None, with one line for the user, while the launcher's host waits for a
        person to log in again (:class:`~corral.errors.LoginNeeded`): its jobs keep their
        state, nothing is submitted, and it is asked again every :data:`LOGIN_RETRY` s."""
        try:
            result = call()
        except LoginNeeded as exc:
            if not exc.dropped:
                raise  # never connected: nothing to wait for, the experiment stops
            if self._login.get(launcher) is None:
                log.warning("%s", exc)
            self._login[launcher] = exc
            self._due[launcher] = time.monotonic() + LOGIN_RETRY
            return None
        if self._login.pop(launcher, None) is not None:
            log.warning("%s: connected again; going on", launcher)
        return result

    def _recover(self, new: list[Job]) -> bool:
        changed = False
        now = time.monotonic()
        for launcher, batch in _by_launcher(new).items():
            if self._login.get(launcher) is not None and self._due.get(launcher, 0.0) > now:
                found = None  # its host waits for a login: asked again when due
            else:
                unstarted = {j for j in batch if j.handle is None}
                found = self._reach(launcher, partial(launcher.recover, batch))
            if found is None:  # asked again later, with the jobs added since
                with self._cond:
                    self._new[:0] = batch
                continue
            for job, status in found.items():
                if status is not None:
                    if status[0] is JobState.RUNNING:
                        launcher.attach(job)
                    if job in unstarted and job.found is None:
                        job.found = status[0]  # an earlier run's doing
                    self._apply({job: status})
                    changed = True
        return changed

    def _halt(self, why: str, new: list[Job]) -> None:
        """Start nothing more: jobs not started fail (in this client only, nothing written)
        with ``why``; the running ones go on being polled."""
        with self._cond:
            new = new + self._new
            self._new.clear()
        self._recover(new)  # what an earlier run started is polled, not taken for unstarted
        self.halted = why
        for job in self.jobs:
            if job.state in (JobState.CREATED, JobState.WAITING, JobState.READY):
                job.state = JobState.FAILED
                job.failure = Failure(FailureReason.KILLED, f"not started: {why}")
        if self.on_halt is not None:
            self.on_halt()
        log.warning("%s: starting nothing more", why)

    def _fail_dependents(self, jobs: Iterable[Job]) -> None:
        batches: dict[Launcher, dict[Job, Failure]] = defaultdict(dict)
        for job in jobs:
            failed = [d.name for d in job.dependencies if d.state is JobState.FAILED]
            failure = Failure(FailureReason.DEPENDENCY, f"dependency failed: {', '.join(failed)}")
            batches[job.launcher][job] = failure
        for launcher, batch in batches.items():
            launcher.mark_all_failed(batch)  # one round trip for the whole batch
            for job, failure in batch.items():
                self._set(job, JobState.FAILED, failure)

    def _apply(self, statuses: dict[Job, Status], only_changes: bool = False) -> bool:
        changed = False
        for job, (state, failure) in statuses.items():
            if only_changes and state is job.state:
                continue
            self._set(job, state, failure)
            changed = True
        return changed

    def _set(self, job: Job, state: JobState, failure: Failure | None) -> None:
        # Once halted nothing starts again: a failure is final, not a retry or a wait.
        if state is JobState.FAILED and failure is not None and self.halted is None:
            if _retry(job, failure):
                if is_remote(job, self.workspace):
                    write_pointer(self.workspace, job, (job.state, None))
                return
            if (
                failure.reason is FailureReason.DEPENDENCY
                and any(not d.state.final for d in job.dependencies)
                and not any(d.state is JobState.FAILED for d in job.dependencies)
            ):
                # cancelled by its scheduler for a parent that is submitted again: it waits
                job.state, job.failure, job.handle = JobState.WAITING, None, None
                return
        job.state = state
        job.failure = failure
        if is_remote(job, self.workspace):
            write_pointer(self.workspace, job, (state, failure))
        if state.final and self.on_finished is not None:
            self.on_finished(job)


def retry_allowed(job: Job, failure: Failure) -> int | None:
    """How many attempts ``job`` may have for ``failure``'s reason, if it may have another
    (None: it may not). A ResumableTask's time limits and preemptions share its
    ``max_retries``."""
    budget = dict(job.launcher.retry_budget(job))
    group = {failure.reason}
    if isinstance(job.task, ResumableTask) and failure.reason in RESUMED_AFTER:
        group = set(RESUMED_AFTER)
        for reason in RESUMED_AFTER:
            allowed = job.task.max_retries if job.max_retries is None else job.max_retries
            budget[reason] = max(budget.get(reason, 0), allowed)
    allowed = max((budget.get(r, 0) for r in group), default=0)
    used = sum(1 for ended in job.attempts if ended.reason in group)
    return allowed if used < allowed else None


def _retry(job: Job, failure: Failure) -> bool:
    """Make a job that ended for a reason its retry budget covers ready to run again."""
    allowed = retry_allowed(job, failure)
    if allowed is None:
        return False
    job.attempts.append(failure)
    job.retries += 1
    job.state = JobState.READY
    job.failure = None
    log.info(
        "%s ended (%s): submitted again, attempt %d",
        job.name,
        failure.reason.value,
        job.retries + 1,
    )
    return True


def _by_launcher(jobs: Iterable[Job]) -> dict[Launcher, list[Job]]:
    groups: dict[Launcher, list[Job]] = defaultdict(list)
    for job in jobs:
        groups[job.launcher].append(job)
    return groups
