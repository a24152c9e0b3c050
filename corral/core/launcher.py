"""The launcher contract: what the scheduler and the ``corral jobs`` commands call.

The scheduler calls ``recover`` (what of these jobs is done or still running?), ``start`` (a
batch), ``poll`` (one query for all active jobs) and ``cancel``, each with every job of a
cycle at once. The command line reaches jobs found in a workspace through the same objects:
it rebuilds a launcher with :meth:`Launcher.for_recorded` from what the job's records say,
then calls ``poll``, ``cancel``, ``markers``, ``follow`` and ``remove_directories`` — so a
plugin launcher that implements the scheduler's methods gets ``corral jobs ls --refresh``,
``log -f``, ``kill`` and ``rm`` too.

Concrete launchers live in :mod:`corral.launchers`; this module only draws the contract and
renders what every launcher writes (``job.sh``, ``params.json``, provenance).
"""

from __future__ import annotations

import abc
import inspect
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self, TypeVar

from corral.core import provenance
from corral.core.job import (
    Deferred,
    Failure,
    FailureReason,
    Job,
    Resources,
    Secret,
    Status,
    Tracked,
)
from corral.core.procs import hostname
from corral.core.script import ScriptSpec, render_job_script, render_secrets
from corral.core.serialize import dump_params
from corral.core.workspace import (
    ATTEMPTS,
    DONE,
    FAILED,
    SECRETS,
    marker_status,
    state_dir,
    write_failed,
)

if TYPE_CHECKING:
    from corral.connectors.base import Connector
    from corral.core.workspace import Workspace

__all__ = ["Deferred", "Launcher", "Origin", "Status"]

J = TypeVar("J", bound=Tracked)


@dataclass(frozen=True)
class Origin:
    """What a workspace recorded about the launcher of some jobs, to reach them again."""

    connector: Connector
    """Rebuilt from the job's records through the connector registry."""
    python: str | None
    """The jobs' interpreter (from their ``job.sh``)."""
    setup: tuple[str, ...]
    """The launcher's setup lines (from their ``job.sh``)."""
    workdir: str
    """The workspace as the jobs see it (a remote launcher's ``workdir``, resolved)."""


def check_retries(owner: str, retries: Mapping[str, int]) -> dict[FailureReason, int]:
    """A retry budget by failure reason (``{"node_fail": 1}``), each name and count checked."""
    from corral.errors import ConfigError, did_you_mean

    if not isinstance(retries, Mapping):
        raise ConfigError(f"{owner}: retries must map failure reasons to counts, got {retries!r}")
    valid = [r.value for r in FailureReason]
    budget: dict[FailureReason, int] = {}
    for name, count in retries.items():
        if name not in valid:
            raise ConfigError(
                f"{owner}: retries: unknown failure reason {name!r}{did_you_mean(name, valid)}; "
                f"valid: {', '.join(valid)}"
            )
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise ConfigError(f"{owner}: retries[{name!r}] must be an int >= 0, got {count!r}")
        budget[FailureReason(name)] = count
    return budget


def _secrets(job: Job) -> dict[str, str]:
    return {k: v.reveal() for k, v in job.environ.items() if isinstance(v, Secret)}


def local_python() -> str:
    """The interpreter jobs run with by default: this one, named the same way however it was
    started (``python script.py``, ``corral dry-run`` through ``python3``, a venv's
    ``bin/python``), so that the job script of a dry run is the one a real run writes."""
    here = Path(sys.executable)
    for name in ("python3", "python"):
        candidate = here.with_name(name)
        try:
            if candidate.samefile(here):
                return str(candidate)
        except OSError:
            continue
    return sys.executable


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
    follow_check_every: ClassVar[float] = 0.5
    """Seconds between two :meth:`poll` calls while :meth:`follow` streams a log."""
    label: str | None = None
    """The name it has in the hosts file (``gpubox``), shown in listings for its address."""
    cancel_grace: float = 10.0
    """Seconds between SIGTERM and SIGKILL when :meth:`cancel` signals processes itself
    (``corral jobs kill --grace`` sets it); a batch scheduler has its own."""

    def __init__(
        self, connector: Connector, *, python: str | None = None, setup: Sequence[str] = ()
    ) -> None:
        self.connector = connector
        self.python = python or local_python()
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
    def poll(self, jobs: Sequence[J]) -> dict[J, Status]:
        """The current status of every job in ``jobs`` (one batched query). A job may be one
        this launcher object never started: one found in the workspace by the CLI."""

    @abc.abstractmethod
    def cancel(self, jobs: Sequence[Tracked]) -> None:
        """Stop the given jobs (one batched command)."""

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

    def capacities(self) -> dict[str, float | frozenset[str]]:
        """What this launcher can give one job (an offer, see :mod:`corral.core.capacity`):
        a local or SSH machine its slots, a SLURM launcher its partition's nodes. Empty when
        it cannot say (a host's declaration in a hosts file then decides)."""
        return {}

    def retry_budget(self, job: Job) -> Mapping[FailureReason, int]:
        """How many times a job that ended for each reason is submitted again (none by
        default; a :class:`~corral.core.resumable.ResumableTask` adds its own)."""
        return {}

    def submitted(self, jobs: Sequence[Job]) -> str:
        """Where ``jobs``, started by this run, went: said in the run's one line."""
        return self.name

    def attach(self, job: Job) -> None:  # noqa: B027  (optional: nothing to note by default)
        """Take note of a job found running (started by an earlier or another client)."""

    def submit_command(self, job: Job) -> list[str] | None:
        """The command that starts ``job``'s script, as a dry run shows it (None: the
        launcher cannot say). Nothing is run."""
        return None

    def planned_root(self, workspace: Workspace) -> Path:
        """:meth:`workspace_root`, found without connecting where the launcher can (a dry
        run builds its paths from it)."""
        return self.workspace_root(workspace)

    # --- jobs found in a workspace (the CLI) -------------------------------------------------

    @classmethod
    def for_recorded(cls, origin: Origin) -> Self:
        """A launcher of this type that can poll, cancel and follow jobs it started before.

        The default passes the connector, python, setup and workdir to the constructor, as
        far as it declares parameters of those names; override it when yours needs more.
        """
        offered = {
            "connector": origin.connector,
            "python": origin.python,
            "setup": list(origin.setup),
            "workdir": origin.workdir,
        }
        params = inspect.signature(cls).parameters
        factory: Any = cls
        built: Self = factory(**{k: v for k, v in offered.items() if k in params and v is not None})
        return built

    def markers(self, jobs: Sequence[J]) -> dict[J, Status | None]:
        """Each job's final marker (done or failed), None when it has none. The default
        reads them through the connector; remote launchers do it in one round trip."""
        found: dict[J, Status | None] = {}
        for job in jobs:
            sd = state_dir(job.directory)
            done = self.connector.exists(sd / DONE)
            failed = None
            if not done and self.connector.exists(sd / FAILED):
                failed = self.connector.read_text(sd / FAILED)
            found[job] = marker_status(done, failed)
        return found

    def follow(self, job: Tracked, *, stderr: bool = False, interval: float = 0.2) -> Iterator[str]:
        """Yield a job's stdout (or stderr) from the start, as it grows, until the job ends.

        The default reads the file through the connector, and asks :meth:`poll` every
        :attr:`follow_check_every` seconds whether the job ended (a job ended by its
        scheduler may leave no marker).
        """
        path = job.directory / ("stderr" if stderr else "stdout")
        offset = 0
        finishing = False
        asked = float("-inf")
        while True:
            chunk = self.connector.read_from(path, offset)
            if chunk:
                offset += len(chunk)
                yield chunk.decode("utf-8", errors="replace")
                continue
            ended = self.markers([job])[job] is not None
            if not ended and job.handle is not None and (
                time.monotonic() - asked >= self.follow_check_every
            ):
                asked = time.monotonic()
                ended = self.poll([job])[job][0].final
            if ended:
                if finishing:
                    return
                finishing = True  # one more read: the last output may land after the marker
            time.sleep(interval)

    def cancel_outcome(self, job: Tracked) -> str:
        """What :meth:`cancel` did to ``job``, as ``corral jobs kill`` reports it."""
        return "cancelled"

    def remove_directories(self, jobs: Sequence[Tracked]) -> None:
        """Remove the directories of jobs that are over, on their host (one command)."""
        if jobs:
            self.connector.run(["rm", "-rf", "--", *[str(j.directory) for j in jobs]], check=True)

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
        if job.attempts:
            files[ATTEMPTS] = json.dumps([a.to_json() for a in job.attempts], indent=1)
        return files

    def fetch(self, job: Job, destination: str | os.PathLike[str]) -> Path:
        """Copy a job's directory (outputs, logs, state) to ``destination`` on this machine."""
        target = Path(destination)
        self.connector.get_tree(job.directory, target)
        return target

    def mark_failed(self, job: J, failure: Failure) -> None:
        """Record, through the connector, that a job failed without running."""
        self.mark_all_failed({job: failure})

    def mark_all_failed(self, failures: Mapping[J, Failure]) -> None:
        """Record that each job failed without running (remote launchers do it in one
        round trip)."""
        for job, failure in failures.items():
            write_failed(job.directory, failure, write=self._write)

    def _write(self, path: Path, text: str, mode: int) -> None:
        self.connector.mkdir(path.parent)
        self.connector.write_text(path, text, mode=mode)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"
