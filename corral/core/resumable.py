"""``ResumableTask``: a task that checkpoints before its time limit and is run again.

On a batch scheduler a job ends at its time limit (``timeout``) or when a higher-priority
job takes its place (``preempted``). A :class:`ResumableTask` is warned by a signal
(``SIGUSR1``, ``warning`` seconds before the limit; SLURM's ``--signal``) or asked to stop
(``SIGTERM``: preemption, after which SLURM waits its ``KillWait`` before ``SIGKILL``); either
way :meth:`ResumableTask.time_is_up` turns true, and the task saves its progress and calls
:meth:`ResumableTask.resume_later`. A job that ended as ``timeout`` or ``preempted`` is
submitted again in the same directory, up to ``max_retries`` times; the logs of each attempt
are kept (``stdout.1``, ``stderr.1``, ...)::

    class Train(ResumableTask):
        epochs: Param[int] = 100

        def execute(self):
            start = load_checkpoint()          # from the job directory (cwd)
            for epoch in range(start, self.epochs):
                train_one_epoch()
                save_checkpoint(epoch + 1)
                if self.time_is_up():
                    self.resume_later()        # ends this attempt; the next one resumes
"""

from __future__ import annotations

import os
import signal
import time
from types import FrameType
from typing import ClassVar, NoReturn

from corral.core.task import Task

WARNING_SIGNAL = signal.SIGUSR1
TIME_LIMIT_ENV = "CORRAL_TIME_LIMIT"
"""Seconds the job may run (set by launchers that enforce a limit)."""

_deadline: float | None = None
_warned = False
_stop: str | None = None


class ResumeLater(BaseException):  # a request, like SystemExit, not an error
    """Raised by :meth:`ResumableTask.resume_later`: the attempt ends, the job runs again."""


class ResumableTask(Task):
    """A task that can stop at its time limit or on preemption and be resumed."""

    max_retries: ClassVar[int] = 3
    """How many times a job ended by ``timeout`` or ``preempted`` is submitted again."""
    warning: ClassVar[int] = 120
    """Seconds before the time limit at which the job is sent ``SIGUSR1``."""

    def remaining_time(self) -> float | None:
        """Seconds left before the job's time limit; None when it has none."""
        if _deadline is None:
            return None
        return max(0.0, _deadline - time.time())

    def warning_received(self) -> bool:
        """Whether the time-limit warning signal arrived."""
        return _warned

    def time_is_up(self) -> bool:
        """Whether the job was warned of its time limit (or is within ``warning`` of it), or
        asked to stop (SIGTERM: preempted, cancelled)."""
        left = self.remaining_time()
        return _warned or _stop is not None or (left is not None and left <= self.warning)

    def resume_later(self, why: str = "") -> NoReturn:
        """End this attempt now; the job is submitted again and ``execute()`` runs anew."""
        raise ResumeLater(why or "stopped before its time limit, to resume")


def _on_warning(signum: int, frame: FrameType | None) -> None:
    global _warned
    _warned = True


def request_stop(signal_name: str) -> None:
    """In the job process: a signal asked the task to stop (its ``time_is_up()`` turns true)."""
    global _stop
    _stop = signal_name


def stop_requested() -> str | None:
    """The signal that asked the task to stop, if one did."""
    return _stop


def prepare(started: float) -> None:
    """In the job process, before ``execute()``: note the deadline, catch the warning."""
    global _deadline, _warned, _stop
    _warned = False
    _stop = None
    end = os.environ.get("SLURM_JOB_END_TIME")
    limit = os.environ.get(TIME_LIMIT_ENV)
    if end and end.isdigit():
        _deadline = float(end)
    elif limit and limit.isdigit():
        _deadline = started + int(limit)
    else:
        _deadline = None
    signal.signal(WARNING_SIGNAL, _on_warning)
