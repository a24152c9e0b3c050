"""``task.on_completed(fn)``: callbacks the client runs when a job is done.

A callback that takes an argument is given the task; one that takes none (``lambda: ...``)
is called without.

Callbacks run one at a time in a thread of their own, so a slow one never delays polling;
``Experiment.wait()`` waits for those queued and raises :class:`CallbackFailed` naming the
ones that raised. A job done before the callback was registered (by an earlier run, or a
moment ago) has it called at once.
"""

from __future__ import annotations

import inspect
import logging
import queue
import threading
import traceback
from collections.abc import Callable
from typing import Any

from corral.core.job import Job, JobState
from corral.errors import CallbackFailed

log = logging.getLogger("corral")

Callback = Callable[..., Any]


def _takes_the_task(callback: Callback) -> bool:
    """Whether ``callback`` takes an argument (the task); ``lambda: ...`` takes none."""
    try:
        params = inspect.signature(callback).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature: give it the task
        return True
    return any(
        p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL) for p in params
    )


class Completions:
    """The callbacks of an experiment's jobs, and the thread that runs them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[int, list[Callback]] = {}
        self._queue: queue.Queue[tuple[Job, Callback] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self.failures: list[str] = []

    def add(self, job: Job, callback: Callback) -> None:
        """Call ``callback(job.task)`` once ``job`` is done (now, if it is)."""
        with self._lock:
            if job.state is not JobState.DONE:
                self._waiting.setdefault(id(job), []).append(callback)
                return
        self._enqueue(job, callback)

    def finished(self, job: Job) -> None:
        """``job`` reached a final state: queue its callbacks if it is done."""
        with self._lock:
            callbacks = self._waiting.pop(id(job), [])
        if job.state is JobState.DONE:
            for callback in callbacks:
                self._enqueue(job, callback)

    def _enqueue(self, job: Job, callback: Callback) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="corral-callbacks", daemon=True)
            self._thread.start()
        self._queue.put((job, callback))

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                job, callback = item
                try:
                    if _takes_the_task(callback):
                        callback(job.task)
                    else:
                        callback()
                except Exception as exc:  # reported by wait(), the others still run
                    name = getattr(callback, "__qualname__", repr(callback))
                    last = traceback.format_exception_only(type(exc), exc)[-1].strip()
                    log.error("on_completed callback %s of %s failed: %s", name, job.name, last)
                    self.failures.append(f"{name} of {job.name}: {last}")
            finally:
                self._queue.task_done()

    def wait(self) -> None:
        """Wait for the queued callbacks; raise :class:`CallbackFailed` if one raised."""
        if self._thread is not None:
            self._queue.join()
        if self.failures:
            failures, self.failures = self.failures, []
            raise CallbackFailed(failures)

    def close(self) -> None:
        """End the thread once the queued callbacks ran."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=5)
            self._thread = None
