"""``LocalLauncher``: job scripts as detached processes on this machine.

Each job runs in a new session (Ctrl-C on the experiment leaves it running; a later run
re-attaches). CPU and GPU slots are leased by the job itself on the machine's lock files
(``/tmp/corral-slots/``, see :mod:`corral.core.slots`), so two experiments on one machine,
whatever their workspaces or users, never oversubscribe it; the launcher also starts no more
jobs than it has slots.
"""

from __future__ import annotations

import abc
import os
import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from corral.connectors.local import LocalConnector
from corral.core import procs
from corral.core.job import Job, JobState, Status, Tracked
from corral.core.launcher import J, Launcher, Origin
from corral.core.slots import SlotBudget
from corral.errors import ConfigError
from corral.host import agent
from corral.host import jobs as hostjobs
from corral.plugins.markers import hookimpl

if TYPE_CHECKING:
    from corral.connectors.base import Connector
    from corral.core.workspace import Workspace
    from corral.plugins.registry import Registry


class HostLauncher(Launcher):
    """A launcher whose job directories are on this machine (the local launcher and kin).

    It owns the whole start flow (:mod:`corral.host.jobs`): under each job's lock it checks
    the directory (done? still running under another client?), writes the files through the
    connector, calls :meth:`launch` and records each handle. A launcher of that kind
    supplies ``launch``, ``alive``, ``poll`` and ``cancel``.
    """

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


class LocalLauncher(HostLauncher):
    """Runs jobs on this machine with ``cpu_slots`` CPU slots and ``gpu_slots`` GPU slots.

    :param cpu_slots: CPU slots (default: the number of cores); a job takes
        ``resources.cpus`` of them.
    :param gpu_slots: GPU slots; a job with ``resources.gpus = k`` gets ``k`` of them in
        ``CUDA_VISIBLE_DEVICES``.
    :param python: the interpreter of the jobs (default: this one).
    :param slots_dir: where the slot lock files are (default: the machine's,
        ``$CORRAL_SLOTS_DIR`` or ``/tmp/corral-slots``).
    :param cancel_grace: seconds between SIGTERM and SIGKILL when a job is cancelled.
    :param connector: a :class:`LocalConnector` (the default) or a subclass of it.
    """

    name = "local"
    poll_interval = 1.0

    def __init__(
        self,
        *,
        cpu_slots: int | None = None,
        gpu_slots: int = 0,
        python: str | None = None,
        connector: Connector | None = None,
        slots_dir: str | os.PathLike[str] | None = None,
        cancel_grace: float = 10.0,
    ) -> None:
        if connector is not None and not isinstance(connector, LocalConnector):
            # it starts and watches processes here: files elsewhere would never meet them
            raise ConfigError(
                f"local launcher: connector must be a LocalConnector, got "
                f"{type(connector).__name__} (for another host, use the ssh launcher)"
            )
        super().__init__(connector or LocalConnector(), python=python)
        self.slots = SlotBudget(
            "local launcher",
            cpu_slots if cpu_slots is not None else (os.cpu_count() or 1),
            gpu_slots,
        )
        self.slots_dir = None if slots_dir is None else os.path.abspath(os.fspath(slots_dir))
        if not isinstance(cancel_grace, int | float) or cancel_grace < 0:
            raise ConfigError(f"local launcher: cancel_grace must be >= 0, got {cancel_grace!r}")
        self.cancel_grace = float(cancel_grace)
        self.cpu_slots, self.gpu_slots = self.slots.cpus, self.slots.gpus
        self._procs: dict[int, subprocess.Popen[bytes]] = {}
        self._lock = threading.Lock()

    def check(self, job: Job) -> None:
        """Refuse jobs asking more slots than exist."""
        self.slots.check(job.name, job.resources)

    def capacities(self) -> dict[str, float | frozenset[str]]:
        """The machine's slots, and its GPU model when one is given."""
        return self.slots.offer()

    def capacity(self, jobs: Sequence[Job]) -> int | None:
        """How many of the ready ``jobs`` fit in the free slots, in order."""
        return self.slots.fits([(j.resources.cpus, j.resources.gpus) for j in jobs])

    def job_environ(self, job: Job) -> dict[str, str]:
        """The slot leases the job takes (see :mod:`corral.core.slots`)."""
        return self.slots.environ(self.slots_dir, job.resources.cpus, job.resources.gpus)

    def command(self, job: Job) -> list[str]:
        """The argv that runs a job's script; it must ``exec`` (the pid is the job's)."""
        return ["bash", str(job.directory / "job.sh")]

    def submit_command(self, job: Job) -> list[str]:
        """``bash <job dir>/job.sh``, started in a new session."""
        return self.command(job)

    def launch(self, jobs: Sequence[Job], *, detached: bool = False) -> list[Any]:
        """Start each job script as a new session."""
        handles = []
        for job in jobs:
            proc = subprocess.Popen(
                self.command(job),
                cwd=job.directory,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                close_fds=True,
            )
            handle = procs.handle_for(proc.pid)
            handles.append(handle)
            with self._lock:
                self._procs[proc.pid] = proc
            if not detached:
                self.slots.take(job, job.resources.cpus, job.resources.gpus)
            threading.Thread(target=self._watch, args=(proc,), daemon=True).start()
        return handles

    def _watch(self, proc: subprocess.Popen[bytes]) -> None:
        proc.wait()
        if self.wake is not None:
            self.wake()

    def attach(self, job: Job) -> None:
        """Count a job found running against the slots."""
        self.slots.take(job, job.resources.cpus, job.resources.gpus)

    def poll(self, jobs: Sequence[J]) -> dict[J, Status]:
        """Our children by their exit status, others (re-attached) through /proc."""
        result: dict[J, Status] = {}
        for job in jobs:
            pid = job.handle.get("pid") if isinstance(job.handle, dict) else None
            with self._lock:
                proc = self._procs.get(pid) if pid is not None else None
            if proc is not None:
                code = proc.poll()
                running = (JobState.RUNNING, None)
                status = running if code is None else hostjobs.ended(job.directory, code)
            else:
                status = hostjobs.poll(job.directory, procs.handle_alive(job.handle))
            if status[0].final:
                self.slots.release(job)
                with self._lock:
                    if pid is not None:
                        self._procs.pop(pid, None)
            result[job] = status
        return result

    def alive(self, handles: Sequence[Any]) -> list[bool]:
        """Whether each recorded process still runs."""
        return [procs.handle_alive(h) for h in handles]

    def cancel(self, jobs: Sequence[Tracked]) -> None:
        """SIGTERM to each job's process group, SIGKILL to what is left after the grace."""
        started = [j for j in jobs if j.handle is not None]
        agent.cancel(
            {
                "handles": [j.handle for j in started],
                "dirs": [str(j.directory) for j in started],
                "grace": self.cancel_grace,
            }
        )

    def cancel_outcome(self, job: Tracked) -> str:
        """``killed (pid N)``."""
        pid = job.handle.get("pid") if isinstance(job.handle, dict) else None
        return f"killed (pid {pid})"

    @classmethod
    def for_recorded(cls, origin: Origin) -> Self:
        """A local launcher with the jobs' python and connector (slots are not counted)."""
        return cls(python=origin.python, connector=origin.connector)


@hookimpl
def corral_register_launchers(registry: Registry[Launcher]) -> None:
    """Register the local launcher."""
    registry.add(LocalLauncher)
