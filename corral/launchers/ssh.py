"""``SSHLauncher``: jobs on another machine over SSH, detached, one slot lease per CPU/GPU.

Job directories live on the remote host under ``workdir`` (the local workspace's layout).
Every scheduler cycle costs one SSH round trip per host for each of: starting the ready jobs
(their files, and a code snapshot the first time it is needed, travel in the same command),
and polling every active job — the host-side work
is done by :mod:`corral.host.agent` there. Jobs are started in a new session, so they survive the
SSH connection and the client; a later run re-attaches (pid + start time). The local
workspace keeps a pointer per job (:mod:`corral.core.pointer`), so that listing jobs needs no
round trip. Slot leases are the remote machine's own lock files
(see :mod:`corral.core.slots`), shared by every client and user of that machine.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Self

from corral.connectors.ssh import SSHConnector
from corral.core.job import Failure, FailureReason, Job, JobState, Status, Tracked
from corral.core.launcher import J, Launcher, Origin
from corral.core.pool import LauncherPool
from corral.core.slots import SlotBudget
from corral.errors import ConfigError, SubmissionError
from corral.launchers import packing
from corral.launchers.packing import Pack
from corral.launchers.remote import AgentLauncher, Host, check_workdir
from corral.plugins.markers import hookimpl

if TYPE_CHECKING:
    from corral.core.workspace import Workspace
    from corral.plugins.registry import Registry

log = logging.getLogger(__name__)


class SSHLauncher(AgentLauncher):
    """Runs jobs on an SSH host with ``cpu_slots`` CPU slots and ``gpu_slots`` GPU slots.

    :param connector: an :class:`SSHConnector` (or give ``host``, an ssh alias or
        ``user@host:port``).
    :param workdir: the remote workspace (absolute, or ``~/...``).
    :param cpu_slots: CPU slots on the host; a job takes ``resources.cpus`` of them.
    :param gpu_slots: GPU slots; a job with ``resources.gpus = k`` gets ``k`` of them as its
        ``CUDA_VISIBLE_DEVICES``, leased on the host (never shared with another client).
    :param gpu_type: the host's GPU model (``"a100"``): a job asking another is refused.
    :param python: the remote interpreter, which must have corral installed.
    :param setup: shell lines run before the job (``source venv/bin/activate``, ...).
    :param slots_dir: the remote directory of the slot lock files (absolute; default: the
        host's, ``$CORRAL_SLOTS_DIR`` there or ``/tmp/corral-slots``).
    :param cancel_grace: seconds between SIGTERM and SIGKILL when a job is cancelled.
    :param pack: run jobs through a fixed pool of worker processes on the host
        (:class:`~corral.launchers.packing.Pack`), rather than a process each.
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
        cpu_slots: int = 1,
        gpu_slots: int = 0,
        gpu_type: str | None = None,
        python: str = "python3",
        setup: Sequence[str] = (),
        slots_dir: str | None = None,
        cancel_grace: float = 10.0,
        pack: Pack | None = None,
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
        self.slots = SlotBudget(
            f"ssh launcher on {connector.destination}", cpu_slots, gpu_slots, gpu_type=gpu_type
        )
        self.slots_dir = slots_dir
        self.cancel_grace = float(cancel_grace)
        if pack is not None and not isinstance(pack, Pack):
            raise ConfigError(f"SSHLauncher(pack=...): expected Pack(...), got {pack!r}")
        self.pack = pack
        self.pack_workers = 0
        """Worker processes running on the host, as the last poll cycle found them."""

    @classmethod
    def pool(cls, launchers: Sequence[SSHLauncher]) -> LauncherPool:
        """Several SSH hosts used as one, jobs spread by free slots (see LauncherPool)."""
        return LauncherPool(launchers)

    @classmethod
    def for_recorded(cls, origin: Origin) -> Self:
        """An SSH launcher on the jobs' host, with their python and setup lines."""
        if not isinstance(origin.connector, SSHConnector):
            raise ConfigError(
                f"ssh launcher: jobs recorded with connector {origin.connector.name!r}, "
                "expected 'ssh'"
            )
        return cls(
            origin.connector,
            workdir=origin.workdir,
            python=origin.python or "python3",
            setup=origin.setup,
        )

    # --- the remote side ------------------------------------------------------------------

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
        """Refuse jobs asking more slots than the host has (or a pack worker)."""
        self.slots.check(job.name, job.resources)
        if self.pack is not None:
            packing.check(self, job)

    def log_refusal(self, why: str) -> None:
        """Say why workers could not be started this cycle."""
        log.warning("%s: pack workers not started yet: %s", self.host, why)

    def can_wait_for(self, dependency: Job) -> bool:
        """A packed job waits for a dependency on the same host: its worker reads the
        dependency's marker."""
        return self.pack is not None and packing.can_wait_for(self, dependency)

    def submitted(self, jobs: Sequence[Job]) -> str:
        """This launcher's name and host (and its pack pool, when packing)."""
        if self.pack is not None:
            return packing.describe(self, jobs)
        return super().submitted(jobs)

    def capacities(self) -> dict[str, float | frozenset[str]]:
        """The machine's slots, and its GPU model when one is given."""
        return self.slots.offer()

    def capacity(self, jobs: Sequence[Job]) -> int | None:
        """How many of the ready ``jobs`` fit in the free slots, in order (all of them when
        packing: they wait in the pool's queue)."""
        if self.pack is not None:
            return None
        return self.slots.fits([(j.resources.cpus, j.resources.gpus) for j in jobs])

    def job_environ(self, job: Job) -> dict[str, str]:
        """The slot leases the job takes on the host (its machine-wide lock files)."""
        return self.slots.environ(self.slots_dir, job.resources.cpus, job.resources.gpus)

    def attach(self, job: Job) -> None:
        """Count a job found running against the slots."""
        if self.pack is None:
            self.slots.take(job, job.resources.cpus, job.resources.gpus)

    # --- the scheduler's calls: one round trip each ------------------------------------------

    def start(
        self, jobs: Sequence[Job], workspace: Workspace, *, detached: bool = False
    ) -> dict[Job, Status]:
        """Send every job's files (and the code snapshots the host has not had yet) and start
        them, in one command (when packing: queue them for the host's workers)."""
        if self.pack is not None:
            return packing.start(self, jobs, workspace)
        entries = [(job.directory, self.job_files(job, workspace)) for job in jobs]
        snapshots = self.host.snapshots(jobs, self.remote_workdir())
        try:
            started = self.host.agent.start(self.name, entries, snapshots=snapshots)
        except SubmissionError as exc:
            failure = Failure(FailureReason.FAILED, str(exc))
            return {job: (JobState.FAILED, failure) for job in jobs}
        self.host.sent(snapshots)
        result: dict[Job, Status] = {}
        for job, answer in zip(jobs, started, strict=True):
            job.handle = answer.handle
            if answer.status[0] is JobState.RUNNING and not detached:
                self.slots.take(job, job.resources.cpus, job.resources.gpus)
            result[job] = answer.status
        return result

    def poll(self, jobs: Sequence[J]) -> dict[J, Status]:
        """Markers and liveness of every active job, in one command."""
        return packing.poll_split(self, jobs, self._poll)

    def _poll(self, jobs: Sequence[J]) -> dict[J, Status]:
        statuses = self.host.agent.poll([(j.directory, j.handle) for j in jobs])
        result: dict[J, Status] = {}
        for job, status in zip(jobs, statuses, strict=True):
            if status[0].final:
                self.slots.release(job)
            result[job] = status
        return result

    def cancel(self, jobs: Sequence[Tracked]) -> None:
        """SIGTERM to each job's process group on the host, SIGKILL to what is left after
        ``cancel_grace`` seconds; one command for all (a packed job: its worker stops it)."""
        packed = [j for j in jobs if packing.is_packed(j)]
        if packed:
            packing.poll(self, [], cancel=packed)
        started = [(j.handle, j.directory) for j in jobs
                   if j.handle is not None and not packing.is_packed(j)]
        if started:
            self.host.agent.cancel(started, self.cancel_grace)

    def cancel_outcome(self, job: Tracked) -> str:
        """``killed on HOST``, or ``not started``."""
        return f"killed on {self.host}" if job.handle is not None else "not started"

    # --- outputs ----------------------------------------------------------------------------

    def follow(self, job: Tracked, *, stderr: bool = False, interval: float = 0.2) -> Iterator[str]:
        """Yield a job's stdout (or stderr) from the start, as it grows, until the job ends
        (``tail -F`` on the host, ending with the job's process)."""
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
