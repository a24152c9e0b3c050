"""The launcher contract the scheduler drives, and the base of launchers running jobs here.

:class:`Launcher` is what the scheduler needs: ``recover`` (what of these jobs is done or
still running?), ``start`` (a batch), ``poll`` (one query for all active jobs) and
``cancel``, each taking every job of a cycle at once. It renders ``job.sh`` and
``params.json`` for its jobs.

:class:`HostLauncher` owns the whole start flow for job directories on the client's
filesystem: under each job's lock it checks the directory (done? still running under another
client?), writes the files through the connector, calls :meth:`HostLauncher.launch` and
records each handle. A launcher of that kind supplies ``launch``, ``alive``, ``poll`` and
``cancel``. Launchers whose job directories are on another host (SSH) run the same flow
there through :mod:`corral.agent`.
"""

from __future__ import annotations

import abc
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from corral.core import hostjobs, provenance
from corral.core.hostjobs import Status
from corral.core.job import Failure, Job, Resources, Secret
from corral.core.procs import hostname
from corral.core.script import ScriptSpec, render_job_script, render_secrets
from corral.core.serialize import dump_params
from corral.core.workspace import FAILED, SECRETS, state_dir

if TYPE_CHECKING:
    from corral.connectors.base import Connector
    from corral.core.workspace import Workspace

__all__ = ["HostLauncher", "Launcher", "Status"]


def _secrets(job: Job) -> dict[str, str]:
    return {k: v.reveal() for k, v in job.environ.items() if isinstance(v, Secret)}


class Launcher(abc.ABC):
    """Runs job scripts somewhere. Subclasses declare their registered ``name``."""

    name: ClassVar[str]
    poll_interval: ClassVar[float] = 1.0
    """Longest pause between two polls of this launcher's jobs, in seconds."""
    min_poll_interval: ClassVar[float] = 0.05
    """Pause after a poll that saw a change; it grows to ``poll_interval`` while nothing does."""
    gather_delay: ClassVar[float] = 0.0
    """While tasks are being submitted, hold ready jobs until none was added for this many
    seconds, so that they go out together (one SLURM array rather than several)."""

    def __init__(
        self, connector: Connector, *, python: str | None = None, setup: Sequence[str] = ()
    ) -> None:
        self.connector = connector
        self.python = python or sys.executable
        self.setup = list(setup)
        self.wake: Callable[[], None] | None = None

    # --- what the scheduler calls, each with every job of a cycle --------------------------

    @abc.abstractmethod
    def recover(self, jobs: Sequence[Job]) -> dict[Job, Status | None]:
        """For jobs seen for the first time: done, still running (re-attached), or None."""

    @abc.abstractmethod
    def start(
        self, jobs: Sequence[Job], workspace: Workspace, *, detached: bool = False
    ) -> dict[Job, Status]:
        """Start ``jobs`` unless another client did. ``detached``: the client is leaving."""

    @abc.abstractmethod
    def poll(self, jobs: Sequence[Job]) -> dict[Job, Status]:
        """The current status of every job in ``jobs`` (one batched query)."""

    @abc.abstractmethod
    def cancel(self, jobs: Sequence[Job]) -> None:
        """Stop the given jobs."""

    # --- optional ------------------------------------------------------------------------

    def render_header(self, job: Job) -> list[str]:
        """Lines placed right after the shebang of ``job.sh`` (e.g. ``#SBATCH`` options)."""
        return []

    def job_environ(self, job: Job) -> dict[str, str]:
        """Variables the launcher adds to the job's environment (after submit hooks)."""
        return {}

    def default_resources(self) -> Resources:
        """A job's resources before submit hooks change them."""
        return Resources()

    def capacity(self, jobs: Sequence[Job]) -> int | None:
        """How many of ``jobs`` (ready, in order) may start now; None for all of them."""
        return None

    def can_wait_for(self, dependency: Job) -> bool:
        """Whether a job of this launcher may be started before ``dependency`` is done,
        because the launcher makes it wait (e.g. SLURM's ``--dependency=afterok``)."""
        return False

    def check(self, job: Job) -> None:  # noqa: B027  (optional: nothing to check by default)
        """Refuse a job this launcher can never run (raise ConfigError)."""

    def attach(self, job: Job) -> None:  # noqa: B027  (optional: nothing to note by default)
        """Take note of a job found running (started by an earlier or another client)."""

    def submit_command(self, job: Job) -> list[str] | None:
        """The command that starts ``job``'s script, as a dry run shows it (None: the
        launcher cannot say). Nothing is run."""
        return None

    def planned_root(self, workspace: Workspace) -> Path:
        """:meth:`workspace_root`, found without connecting anywhere when the launcher can
        (a dry run builds its paths from it)."""
        return self.workspace_root(workspace)

    # --- shared by every launcher ----------------------------------------------------------

    def job_directory(self, workspace: Workspace, type_id: str, identifier: str) -> Path:
        """Where a job runs: ``<workspace>/jobs/<type id>/<identifier>`` on its host."""
        return self.workspace_root(workspace).joinpath("jobs", type_id, identifier)

    def workspace_root(self, workspace: Workspace) -> Path:
        """The workspace as the jobs see it (a remote launcher's ``workdir``)."""
        return workspace.root

    def location(self, workspace: Workspace) -> str:
        """Jobs at the same location see each other's files (a dependency needs that)."""
        return f"local:{hostname()}:{workspace.root}"

    def script_for(self, job: Job) -> str:
        """The exact ``job.sh`` of ``job`` (secret values are not in it: it sources them)."""
        environ = {**job.environ, **self.job_environ(job)}
        spec = ScriptSpec(
            job_dir=str(job.directory),
            python=self.python,
            identifier=job.identifier,
            type_id=job.type_id,
            environ={k: v for k, v in environ.items() if not isinstance(v, Secret)},
            header=self.render_header(job),
            setup=self.setup,
            secrets=SECRETS if _secrets(job) else None,
        )
        return render_job_script(spec)

    def job_files(self, job: Job, workspace: Workspace) -> dict[str, str]:
        """The files of a job directory: ``params.json``, ``job.sh``, its
        ``.corral/provenance.json``, and the owner-only ``.corral/secrets.env`` when submit
        hooks set :class:`~corral.core.job.Secret` values."""
        params = dump_params(
            job.task,
            workspace=self.planned_root(workspace),
            job_dir=job.directory,
            depends_on=[d.relpath for d in job.dependencies],
            snapshot=job.snapshot.to_json() if job.snapshot is not None else None,
        )
        files = {"params.json": json.dumps(params, indent=1), "job.sh": self.script_for(job)}
        if job.provenance is not None:
            record = provenance.for_job(job, workspace)
            files[provenance.PROVENANCE] = json.dumps(record, indent=1, sort_keys=True)
        secrets = _secrets(job)
        if secrets:
            files[SECRETS] = render_secrets(secrets)
        return files

    def fetch(self, job: Job, destination: str | os.PathLike[str]) -> Path:
        """Copy a job's directory (outputs, logs, state) to ``destination`` on this machine."""
        target = Path(destination)
        self.connector.get_tree(job.directory, target)
        return target

    def mark_failed(self, job: Job, failure: Failure) -> None:
        """Record, through the connector, that a job failed without running."""
        self.connector.mkdir(state_dir(job.directory))
        self.connector.write_text(
            state_dir(job.directory) / FAILED, json.dumps(failure.to_json(), sort_keys=True)
        )

    def mark_all_failed(self, failures: Mapping[Job, Failure]) -> None:
        """Record that each job failed without running (:meth:`mark_failed` for each; remote
        launchers do it in one round trip)."""
        for job, failure in failures.items():
            self.mark_failed(job, failure)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


class HostLauncher(Launcher):
    """A launcher whose job directories are on this machine (the local launcher and kin)."""

    @abc.abstractmethod
    def launch(self, jobs: Sequence[Job], *, detached: bool = False) -> list[Any]:
        """Start the scripts of ``jobs`` (files are written); return one JSON-able handle each.

        ``detached`` means the client is leaving: the jobs must go on without it.
        """

    @abc.abstractmethod
    def alive(self, handles: Sequence[Any]) -> list[bool]:
        """Whether each recorded handle (from an earlier run) still runs."""

    def recover(self, jobs: Sequence[Job]) -> dict[Job, Status | None]:
        """Read each job directory: done, or still running under its recorded handle."""
        found = hostjobs.recover([j.directory for j in jobs], self.name, self._alive)
        result: dict[Job, Status | None] = {}
        for job, (status, handle) in zip(jobs, found, strict=True):
            if handle is not None:
                job.handle = handle
            result[job] = status
        return result

    def start(
        self, jobs: Sequence[Job], workspace: Workspace, *, detached: bool = False
    ) -> dict[Job, Status]:
        """Write and launch each job under its job lock, unless done or running already."""
        by_dir = {job.directory: job for job in jobs}

        def spawn(dirs: list[Path]) -> list[Any]:
            return self.launch([by_dir[d] for d in dirs], detached=detached)

        entries = [(job.directory, self.job_files(job, workspace)) for job in jobs]
        started = hostjobs.start(
            entries, self.name, alive=self._alive, spawn=spawn, write=self._write
        )
        result: dict[Job, Status] = {}
        for job, (status, handle) in zip(jobs, started, strict=True):
            if handle is not None:
                job.handle = handle
            result[job] = status
        return result

    def _alive(self, handles: list[Any]) -> list[bool]:
        return self.alive(handles)

    def _write(self, path: Path, text: str, mode: int) -> None:
        self.connector.write_text(path, text, mode=mode)
