"""The ``Launcher`` contract the scheduler drives.

The base class owns the flow of starting jobs: take the job lock, check the job directory
(done? already running under another client?), write ``params.json`` and ``job.sh`` through
the connector, hand the batch to :meth:`Launcher.launch`, record each handle in
``.corral/launch.json``. A concrete launcher supplies :meth:`launch`, a batched
:meth:`poll`, :meth:`alive` and :meth:`cancel`, and may add ``#SBATCH``-style lines with
:meth:`render_header`.
"""

from __future__ import annotations

import abc
import json
import socket
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any, ClassVar

from filelock import FileLock

from corral.core.job import Failure, FailureReason, Job, JobState
from corral.core.script import ScriptSpec, render_job_script
from corral.core.serialize import dump_params
from corral.core.workspace import (
    LAUNCH,
    SUBMIT_LOCK,
    clear_final,
    final_state,
    read_json,
    state_dir,
    write_failed,
)

if TYPE_CHECKING:
    from corral.connectors.base import Connector
    from corral.core.workspace import Workspace

Status = tuple[JobState, Failure | None]
"""A job's state as seen by a launcher, with the failure when it failed."""

LOCK_TIMEOUT = 120.0


class Launcher(abc.ABC):
    """Runs job scripts somewhere. Subclasses declare their registered ``name``."""

    name: ClassVar[str]
    poll_interval: ClassVar[float] = 1.0
    """Longest pause between two polls of this launcher's jobs, in seconds."""

    def __init__(self, connector: Connector, *, python: str | None = None) -> None:
        self.connector = connector
        self.python = python or sys.executable
        self.wake: Callable[[], None] | None = None

    # --- what a concrete launcher supplies ---------------------------------------------------

    @abc.abstractmethod
    def launch(self, jobs: Sequence[Job], *, detached: bool = False) -> list[Any]:
        """Start the scripts of ``jobs`` (files are written); return one JSON-able handle each.

        ``detached`` means the client is leaving: the jobs must go on without it.
        """

    @abc.abstractmethod
    def poll(self, jobs: Sequence[Job]) -> dict[Job, Status]:
        """The current status of every job in ``jobs`` (one batched query)."""

    @abc.abstractmethod
    def alive(self, handles: Sequence[Any]) -> list[bool]:
        """Whether each recorded handle (from an earlier run) still runs."""

    @abc.abstractmethod
    def cancel(self, jobs: Sequence[Job]) -> None:
        """Stop the given jobs."""

    def render_header(self, job: Job) -> list[str]:
        """Lines placed right after the shebang of ``job.sh`` (e.g. ``#SBATCH`` options)."""
        return []

    def job_environ(self, job: Job) -> dict[str, str]:
        """Variables the launcher adds to the job's environment (after submit hooks)."""
        return {}

    def capacity(self, jobs: Sequence[Job]) -> int | None:
        """How many of ``jobs`` (ready, in order) may start now; None for all of them."""
        return None

    def check(self, job: Job) -> None:  # noqa: B027  (optional: nothing to check by default)
        """Refuse a job this launcher can never run (raise ConfigError)."""

    def attach(self, job: Job) -> None:  # noqa: B027  (optional: nothing to note by default)
        """Take note of a job found running (started by an earlier or another client)."""

    # --- the flow the base owns --------------------------------------------------------------

    def script_for(self, job: Job) -> str:
        """The exact ``job.sh`` of ``job``."""
        spec = ScriptSpec(
            job_dir=str(job.directory),
            python=self.python,
            identifier=job.identifier,
            type_id=job.type_id,
            environ={**job.environ, **self.job_environ(job)},
            header=self.render_header(job),
        )
        return render_job_script(spec)

    def recover(self, jobs: Sequence[Job]) -> dict[Job, Status | None]:
        """For jobs seen for the first time: done, still running (re-attached), or None."""
        result: dict[Job, Status | None] = {}
        running: list[tuple[Job, Any]] = []
        for job in jobs:
            final = final_state(job.directory)
            if final is not None and final[0] is JobState.DONE:
                result[job] = final
                continue
            launch = read_json(state_dir(job.directory) / LAUNCH)
            if final is None and launch and launch.get("launcher") == self.name:
                running.append((job, launch.get("handle")))
            else:
                result[job] = None
        if running:
            for (job, handle), is_alive in zip(
                running, self.alive([h for _, h in running]), strict=True
            ):
                if is_alive:
                    job.handle = handle
                    result[job] = (JobState.RUNNING, None)
                else:  # it may have finished since we looked; a failure is re-run
                    final = final_state(job.directory)
                    done = final is not None and final[0] is JobState.DONE
                    result[job] = final if done else None
        return result

    def start(
        self, jobs: Sequence[Job], workspace: Workspace, *, detached: bool = False
    ) -> dict[Job, Status]:
        """Start ``jobs`` unless another client did: each under its job lock."""
        result: dict[Job, Status] = {}
        to_launch: list[Job] = []
        with ExitStack() as locks:
            for job in jobs:
                sd = state_dir(job.directory)
                sd.mkdir(parents=True, exist_ok=True)
                locks.enter_context(FileLock(sd / SUBMIT_LOCK, timeout=LOCK_TIMEOUT))
                status = self.recover([job])[job]
                if status is not None:
                    result[job] = status
                    continue
                clear_final(job.directory)
                self._write_files(job, workspace)
                to_launch.append(job)
            if to_launch:
                try:
                    handles = self.launch(to_launch, detached=detached)
                except Exception as exc:
                    failure = Failure(FailureReason.FAILED, f"submission failed: {exc}")
                    for job in to_launch:
                        write_failed(job.directory, failure)
                        result[job] = (JobState.FAILED, failure)
                    return result
                host = socket.gethostname()
                for job, handle in zip(to_launch, handles, strict=True):
                    job.handle = handle
                    record = {
                        "launcher": self.name,
                        "handle": handle,
                        "host": host,
                        "time": time.time(),
                    }
                    self.connector.write_text(
                        state_dir(job.directory) / LAUNCH, json.dumps(record, sort_keys=True)
                    )
                    result[job] = (JobState.RUNNING, None)
        return result

    def _write_files(self, job: Job, workspace: Workspace) -> None:
        params = dump_params(
            job.task,
            workspace=workspace.root,
            job_dir=job.directory,
            depends_on=[d.relpath for d in job.dependencies],
        )
        self.connector.write_text(job.directory / "params.json", json.dumps(params, indent=1))
        self.connector.write_text(job.directory / "job.sh", self.script_for(job), mode=0o755)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"
