"""Where a task is submitted and where ``@cache`` keeps its files, without importing upward.

The experiment (:mod:`corral.app.experiment`, above the core) makes itself the current
:class:`Submitter` while its block runs; :meth:`Task.submit <corral.core.task.Task.submit>`
and ``@cache`` ask this module for it. Inside a job the runner sets the job's workspace.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from corral.core.task import Task


class Submitter(Protocol):
    """What tasks are submitted to: a running experiment."""

    @property
    def workspace_root(self) -> Path:
        """The workspace directory on this machine."""
        ...

    def submit(self, task: Task, launcher: Any = None, **options: Any) -> Any:
        """Schedule ``task``; return its ``task_outputs``."""
        ...

    def on_completed(self, task: Task, callback: Any) -> None:
        """Call ``callback(task)`` once the job of the submitted ``task`` is done."""
        ...


_CURRENT: contextvars.ContextVar[Submitter | None] = contextvars.ContextVar(
    "corral_submitter", default=None
)
_job_workspace: Path | None = None


def current() -> Submitter | None:
    """The experiment whose block is running, if any."""
    return _CURRENT.get()


@contextmanager
def submitting_to(submitter: Submitter) -> Iterator[None]:
    """Make ``submitter`` the current one for the duration of the block."""
    token = _CURRENT.set(submitter)
    try:
        yield
    finally:
        _CURRENT.reset(token)


def set_job_workspace(path: Path) -> None:
    """Called by the job runner: inside a job, ``@cache`` lives in the job's workspace."""
    global _job_workspace
    _job_workspace = path


def job_workspace() -> Path | None:
    """The workspace of the job this process runs, if it runs one."""
    return _job_workspace
