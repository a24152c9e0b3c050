"""``SSHLauncher``: jobs on another machine over SSH, detached, one slot lease per CPU/GPU.

Job directories live on the remote host under ``workdir`` (the local workspace's layout).
Every scheduler cycle costs one SSH round trip per host for each of: starting the ready jobs
(their files, and a code snapshot the first time it is needed, travel in the same command),
and polling every active job — the host-side work
is done by :mod:`corral.agent` there. Jobs are started in a new session, so they survive the
SSH connection and the client; a later run re-attaches (pid + start time). The local
workspace keeps a pointer per job (:mod:`corral.core.pointer`), so that listing jobs needs no
round trip. Slot leases are the remote machine's own lock files
(see :mod:`corral.core.slots`), shared by every client and user of that machine.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from corral.connectors.ssh import SSHConnector
from corral.core.hostjobs import Status
from corral.core.job import Failure, Job, JobState
from corral.core.launcher import Launcher
from corral.core.pool import LauncherPool
from corral.core.slots import SlotBudget
from corral.errors import ConfigError, SubmissionError
from corral.launchers.host import Host, check_workdir
from corral.plugins.markers import hookimpl

if TYPE_CHECKING:
    from corral.core.workspace import Workspace
    from corral.plugins.registry import Registry



def _status(data: Any) -> Status | None:
    if data is None:
        return None
    state, failure = data
    return JobState(state), (Failure.from_json(failure) if failure is not None else None)


class SSHLauncher(Launcher):
    """Runs jobs on an SSH host with ``cpus`` CPU slots and ``gpus`` GPU slots.

    :param connector: an :class:`SSHConnector` (or give ``host``, an ssh alias or
        ``user@host:port``).
    :param workdir: the remote workspace (absolute, or ``~/...``).
    :param cpus: CPU slots on the host; a job takes ``resources.cpus``.
    :param gpus: GPU slots; a job with ``resources.gpus = k`` gets ``k`` of them as its
        ``CUDA_VISIBLE_DEVICES``, leased on the host (never shared with another client).
    :param python: the remote interpreter, which must have corral installed.
    :param setup: shell lines run before the job (``source venv/bin/activate``, ...).
    :param slots_dir: the remote directory of the slot lock files (absolute; default: the
        host's, ``$CORRAL_SLOTS_DIR`` there or ``/tmp/corral-slots``).
    :param cancel_grace: seconds between SIGTERM and SIGKILL when a job is cancelled.
    """

    name = "ssh"
    poll_interval = 2.0
    min_poll_interval = 0.25  # each poll starts a Python process on the host: not every 50 ms

    def __init__(
        self,
        connector: SSHConnector | None = None,
        *,
        host: str | None = None,
        workdir: str,
        cpus: int = 1,
        gpus: int = 0,
        python: str = "python3",
        setup: Sequence[str] = (),
        slots_dir: str | None = None,
        cancel_grace: float = 10.0,
    ) -> None:
        if connector is None:
            if host is None:
                raise ConfigError("SSHLauncher needs connector=SSHConnector(...) or host=...")
            connector = SSHConnector(host)
        elif host is not None:
            raise ConfigError("SSHLauncher: give connector= or host=, not both")
        if not isinstance(connector, SSHConnector):
            raise ConfigError(
                f"SSHLauncher: connector must be an SSHConnector, got {type(connector).__name__}"
            )
        check_workdir("SSHLauncher", workdir)
        if slots_dir is not None and not (isinstance(slots_dir, str) and slots_dir.startswith("/")):
            raise ConfigError(f"SSHLauncher: slots_dir must be an absolute path, got {slots_dir!r}")
        if not isinstance(cancel_grace, int | float) or cancel_grace < 0:
            raise ConfigError(f"SSHLauncher: cancel_grace must be >= 0, got {cancel_grace!r}")
        super().__init__(connector, python=python, setup=setup)
        self.ssh = connector
        self.workdir = workdir
        self.host = Host(connector, python=python, setup=setup, workdir=workdir)
        self.slots = SlotBudget(f"ssh launcher on {connector.destination}", cpus, gpus)
        self.slots_dir = slots_dir
        self.cancel_grace = float(cancel_grace)

    @classmethod
    def pool(cls, launchers: Sequence[SSHLauncher]) -> LauncherPool:
        """Several SSH hosts used as one, jobs spread by free slots (see LauncherPool)."""
        return LauncherPool(launchers)

    # --- the remote side ------------------------------------------------------------------

    def agent(self, command: str, request: Any) -> Any:
        """Run the agent command ``command`` on the host with ``request``; its answer."""
        return self.host.call(command, request)

    def remote_workdir(self) -> PurePosixPath:
        """The workdir with ``~`` resolved; checks the remote python and corral once."""
        return self.host.root(PurePosixPath(self.workdir))

    # --- where jobs are --------------------------------------------------------------------

    def workspace_root(self, workspace: Workspace) -> Path:
        """The remote workdir."""
        return Path(self.remote_workdir())

    def planned_root(self, workspace: Workspace) -> Path:
        """The remote workdir; connects only to resolve a ``~`` in it."""
        known = self.host.known_root()
        return Path(known) if known is not None else self.workspace_root(workspace)

    def submit_command(self, job: Job) -> list[str]:
        """The agent's ``start`` over SSH: it runs ``bash job.sh`` there, in a new session."""
        return ["ssh", str(self.ssh.destination), *self.host.agent_argv("start")]

    def location(self, workspace: Workspace) -> str:
        """The remote host and workdir."""
        return f"ssh:{self.ssh.destination}:{self.workdir}"

    def check(self, job: Job) -> None:
        """Refuse jobs asking more slots than the host has."""
        self.slots.check(job.name, job.resources.cpus, job.resources.gpus)

    def capacity(self, jobs: Sequence[Job]) -> int | None:
        """How many of the ready ``jobs`` fit in the free slots, in order."""
        return self.slots.fits([(j.resources.cpus, j.resources.gpus) for j in jobs])

    def job_environ(self, job: Job) -> dict[str, str]:
        """The slot leases the job takes on the host (its machine-wide lock files)."""
        return self.slots.environ(self.slots_dir, job.resources.cpus, job.resources.gpus)

    def attach(self, job: Job) -> None:
        """Count a job found running against the slots."""
        self.slots.take(job, job.resources.cpus, job.resources.gpus)

    # --- the scheduler's calls: one round trip each ------------------------------------------

    def recover(self, jobs: Sequence[Job]) -> dict[Job, Status | None]:
        """Ask the host, for every job at once, what is done or still running."""
        answers = self.agent(
            "recover", {"launcher": self.name, "dirs": [str(j.directory) for j in jobs]}
        )
        result: dict[Job, Status | None] = {}
        for job, answer in zip(jobs, answers, strict=True):
            if answer["handle"] is not None:
                job.handle = answer["handle"]
            result[job] = _status(answer["status"])
        return result

    def start(
        self, jobs: Sequence[Job], workspace: Workspace, *, detached: bool = False
    ) -> dict[Job, Status]:
        """Send every job's files (and the code snapshots the host has not had yet) and start
        them, in one command."""
        files = {job: self.job_files(job, workspace) for job in jobs}
        request: dict[str, Any] = {
            "launcher": self.name,
            "jobs": [{"dir": str(job.directory), "files": files[job]} for job in jobs],
        }
        snapshots = self.host.snapshots(jobs, self.remote_workdir())
        if snapshots:
            request["snapshots"] = snapshots
        try:
            answers = self.agent("start", request)
        except SubmissionError as exc:
            failure = Failure.from_json({"reason": "failed", "message": str(exc)})
            return {job: (JobState.FAILED, failure) for job in jobs}
        self.host.sent(snapshots)
        result: dict[Job, Status] = {}
        for job, answer in zip(jobs, answers, strict=True):
            status = _status(answer["status"])
            assert status is not None
            job.handle = answer["handle"]
            if status[0] is JobState.RUNNING and not detached:
                self.slots.take(job, job.resources.cpus, job.resources.gpus)
            result[job] = status
        return result

    def poll(self, jobs: Sequence[Job]) -> dict[Job, Status]:
        """Markers and liveness of every active job, in one command."""
        answers = self.agent(
            "poll", {"jobs": [{"dir": str(j.directory), "handle": j.handle} for j in jobs]}
        )
        result: dict[Job, Status] = {}
        for job, answer in zip(jobs, answers, strict=True):
            status = _status(answer["status"])
            assert status is not None
            if status[0].final:
                self.slots.release(job)
            result[job] = status
        return result

    def cancel(self, jobs: Sequence[Job]) -> None:
        """SIGTERM to each job's process group on the host, SIGKILL to what is left after
        ``cancel_grace`` seconds; one command for all."""
        started = [j for j in jobs if j.handle is not None]
        self.agent(
            "cancel",
            {
                "handles": [j.handle for j in started],
                "dirs": [str(j.directory) for j in started],
                "grace": self.cancel_grace,
            },
        )

    def mark_failed(self, job: Job, failure: Failure) -> None:
        """Write the job's ``failed`` marker on the host."""
        self.mark_all_failed({job: failure})

    def mark_all_failed(self, failures: Mapping[Job, Failure]) -> None:
        """Write the ``failed`` markers of jobs that could not run, in one command."""
        if not failures:
            return
        jobs = [{"dir": str(j.directory), "failure": f.to_json()} for j, f in failures.items()]
        self.agent("fail", {"jobs": jobs})

    # --- outputs ----------------------------------------------------------------------------

    def follow(self, job: Job, *, stderr: bool = False) -> Iterator[str]:
        """Yield a job's stdout (or stderr) from the start, as it grows, until the job ends."""
        path = str(job.directory / ("stderr" if stderr else "stdout"))
        argv = ["tail", "-n", "+1", "-F", path]
        pid = job.handle.get("pid") if isinstance(job.handle, dict) else None
        if pid is not None:
            argv.insert(1, f"--pid={pid}")  # tail ends when the job does
        return self.ssh.stream(argv)


@hookimpl
def corral_register_launchers(registry: Registry[Launcher]) -> None:
    """Register the SSH launcher."""
    registry.add(SSHLauncher)
