"""``SlurmLauncher``: jobs through ``sbatch``, on this machine or on a login node over SSH.

Each scheduler cycle's ready jobs that share their options go out as **one job array** (one
``sbatch``, chunked to the cluster's ``MaxArraySize``), their files written in the same
command; polling is **one** ``squeue`` (or ``sacct`` where accounting works) for every job
of the launcher, plus one read of the markers of the jobs that ended. The job's own marker
wins over the controller's view, except for what only the controller knows (time limit,
memory, preemption, node failure, cancellation). Every SLURM command is counted in
``launcher.counts``.
"""

from __future__ import annotations

import re
import sys
import uuid
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from corral.connectors.base import Connector
from corral.connectors.local import LocalConnector
from corral.core.hostjobs import Status
from corral.core.job import Failure, Job, JobState, Resources
from corral.core.launcher import Launcher
from corral.errors import ConfigError
from corral.launchers.host import Host, check_workdir
from corral.launchers.slurm_script import SlurmOptions, check_resources, header, sbatch_options
from corral.launchers.slurm_states import combine, controller_status
from corral.plugins.markers import hookimpl

if TYPE_CHECKING:
    from corral.core.workspace import Workspace
    from corral.plugins.registry import Registry

DEFAULT_MAX_ARRAY = 1001


def _status(data: Any) -> Status | None:
    if data is None:
        return None
    state, failure = data
    return JobState(state), (Failure.from_json(failure) if failure is not None else None)


class SlurmLauncher(Launcher):
    """Submits jobs to SLURM.

    :param connector: ``LocalConnector()`` (default: sbatch on this machine) or an
        ``SSHConnector`` to a login node.
    :param workdir: where job directories live on the cluster (required over SSH; default,
        locally: the experiment's workspace).
    :param python: the interpreter of the jobs (must have corral).
    :param partition, account, qos, constraint, nodes: cluster options for every job.
    :param cpus, gpus, mem, time: default resources of a job (submit hooks may change them).
    :param extra: more ``sbatch`` options, ``{"--option": "value"}`` (None for a flag).
    :param setup: shell lines run before each job (``module load ...``).
    :param throttle: at most this many tasks of an array run at once (``%throttle``).
    """

    name = "slurm"
    poll_interval = 30.0
    min_poll_interval = 1.0

    def __init__(
        self,
        connector: Connector | None = None,
        *,
        workdir: str | None = None,
        python: str | None = None,
        partition: str | None = None,
        account: str | None = None,
        qos: str | None = None,
        constraint: str | None = None,
        nodes: int | None = None,
        cpus: int = 1,
        gpus: int = 0,
        mem: str | None = None,
        time: str | None = None,
        extra: Mapping[str, Any] | None = None,
        setup: Sequence[str] = (),
        throttle: int | None = None,
    ) -> None:
        connector = connector if connector is not None else LocalConnector()
        remote = not isinstance(connector, LocalConnector)
        if remote and workdir is None:
            raise ConfigError("SlurmLauncher over SSH needs workdir= (a path on the cluster)")
        if workdir is not None:
            check_workdir("SlurmLauncher", workdir)
        python = python or ("python3" if remote else sys.executable)
        super().__init__(connector, python=python, setup=setup)
        self._kwargs: dict[str, Any] = {
            "connector": connector,
            "workdir": workdir,
            "python": python,
            "partition": partition,
            "account": account,
            "qos": qos,
            "constraint": constraint,
            "nodes": nodes,
            "cpus": cpus,
            "gpus": gpus,
            "mem": mem,
            "time": time,
            "extra": extra,
            "setup": setup,
            "throttle": throttle,
        }
        self.options = SlurmOptions.make(
            partition=partition,
            account=account,
            qos=qos,
            constraint=constraint,
            nodes=nodes,
            extra=extra,
        )
        self.defaults = Resources(cpus=cpus, gpus=gpus, mem=mem, time=time)
        check_resources(self.defaults)
        self.throttle = throttle
        self.workdir = workdir
        self.host = Host(connector, python=python, setup=setup, workdir=workdir)
        self.counts: Counter[str] = Counter()
        self._max_array: int | None = None
        self._sacct: bool | None = None

    def with_(self, **changes: Any) -> SlurmLauncher:
        """A copy with some options changed: ``cluster.with_(partition="short")``."""
        unknown = set(changes) - set(self._kwargs)
        if unknown:
            valid = ", ".join(sorted(self._kwargs))
            raise ConfigError(f"unknown SLURM option {sorted(unknown)[0]!r}; valid: {valid}")
        return SlurmLauncher(**{**self._kwargs, **changes})

    # --- cluster facts, read once ------------------------------------------------------------

    def run(self, argv: list[str]) -> Any:
        """Run a SLURM command where the cluster is, counting it."""
        self.counts[argv[0]] += 1
        return self.connector.run(argv, timeout=120)

    def max_array_size(self) -> int:
        """The cluster's ``MaxArraySize`` (tasks per array), from ``scontrol show config``."""
        if self._max_array is None:
            out = self.run(["scontrol", "show", "config"]).stdout
            found = re.search(r"^MaxArraySize\s*=\s*(\d+)", out, re.MULTILINE)
            # an array of N tasks has indices 0..N-1, which must stay below MaxArraySize
            self._max_array = int(found.group(1)) - 1 if found else DEFAULT_MAX_ARRAY - 1
        return self._max_array

    def accounting(self) -> bool:
        """Whether ``sacct`` works on this cluster (else polling uses ``squeue``)."""
        if self._sacct is None:
            result = self.run(["sacct", "-n", "-X", "-j", "1", "-o", "JobID"])
            self._sacct = result.ok and "disabled" not in result.stderr
        return self._sacct

    # --- where jobs are ------------------------------------------------------------------

    def default_resources(self) -> Resources:
        """A job's resources before submit hooks: the launcher's cpus, gpus, mem, time."""
        return Resources(**self.defaults.to_json())

    def workspace_root(self, workspace: Workspace) -> Path:
        """The cluster-side workdir (the workspace itself when local and none was given)."""
        return Path(self.host.root(PurePosixPath(workspace.root)))

    def location(self, workspace: Workspace) -> str:
        """The cluster's filesystem as seen by its jobs."""
        return f"slurm:{self.host}:{self.workspace_root(workspace)}"

    def check(self, job: Job) -> None:
        """Refuse resources SLURM would reject."""
        check_resources(job.resources)

    def render_header(self, job: Job) -> list[str]:
        """``#SBATCH`` lines, so that ``job.sh`` can also be submitted by hand."""
        lines = [f"--job-name=corral-{job.identifier[:12]}", f"--comment={job.relpath}"]
        return header(lines + sbatch_options(job.resources, self.options))

    # --- the scheduler's calls ------------------------------------------------------------

    def recover(self, jobs: Sequence[Job]) -> dict[Job, Status | None]:
        """Done jobs, and jobs still known to SLURM as pending or running (one command)."""
        answers = self.host.call(
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
        """One array (one sbatch) per group of jobs with equal options and dependencies."""
        root = self.workspace_root(workspace)
        groups: dict[tuple[tuple[str, ...], tuple[str, ...]], list[Job]] = defaultdict(list)
        for job in jobs:
            waits_for = tuple(
                sorted(
                    d.handle["id"]
                    for d in job.dependencies
                    if not d.state.final
                    and isinstance(d.handle, dict)
                    and "id" in d.handle
                    and d.launcher.location(workspace) == self.location(workspace)
                )
            )
            groups[(tuple(sbatch_options(job.resources, self.options)), waits_for)].append(job)
        result: dict[Job, Status] = {}
        size = self.max_array_size()
        for (options, waits_for), members in groups.items():
            for i in range(0, len(members), size):
                chunk = members[i : i + size]
                result.update(
                    self._submit_array(chunk, list(options), list(waits_for), root, workspace)
                )
        return result

    def _submit_array(
        self,
        jobs: list[Job],
        options: list[str],
        waits_for: list[str],
        root: Path,
        workspace: Workspace,
    ) -> dict[Job, Status]:
        arrays = root / ".corral" / "arrays"
        request = {
            "launcher": self.name,
            "jobs": [
                {"dir": str(j.directory), "files": self.job_files(j, workspace)} for j in jobs
            ],
            "sbatch": {
                "path": str(arrays / f"{uuid.uuid4().hex[:16]}.sh"),
                "options": options,
                "name": "corral",
                "comment": f"corral {len(jobs)} job(s) {jobs[0].relpath}",
                "output": str(arrays / "%A_%a.out"),
                "dependency": waits_for,
                "throttle": self.throttle,
            },
        }
        answers = self.host.call("start", request)
        if any(isinstance(a["handle"], dict) and "wrapper" in a["handle"] for a in answers) or any(
            a["status"] and a["status"][1] and a["status"][1].get("reason") == "rejected"
            for a in answers
        ):
            self.counts["sbatch"] += 1
        result: dict[Job, Status] = {}
        for job, answer in zip(jobs, answers, strict=True):
            status = _status(answer["status"])
            assert status is not None
            job.handle = answer["handle"]
            result[job] = (JobState.SUBMITTED, None) if status[0] is JobState.RUNNING else status
        return result

    def poll(self, jobs: Sequence[Job]) -> dict[Job, Status]:
        """One squeue/sacct call for every job; one marker read for those that ended."""
        ids = [j.handle["id"] for j in jobs if isinstance(j.handle, dict) and "id" in j.handle]
        seen = self._controller_states(ids)
        result: dict[Job, Status] = {}
        ended: list[Job] = []
        views: dict[Job, Status | None] = {}
        for job in jobs:
            state = seen.get(job.handle["id"]) if isinstance(job.handle, dict) else None
            view = controller_status(*state) if state is not None else None
            views[job] = view
            if view is not None and not view[0].final:
                result[job] = view
            else:
                ended.append(job)
        if ended:
            markers = self.host.call("inspect", {"dirs": [str(j.directory) for j in ended]})
            for job, marker in zip(ended, markers, strict=True):
                result[job] = combine(views[job], _status(marker))
        return result

    def _controller_states(self, ids: list[str]) -> dict[str, tuple[str, str]]:
        if not ids:
            return {}
        bases = ",".join(sorted({i.split("_")[0] for i in ids}))
        states: dict[str, tuple[str, str]] = {}
        if self.accounting():
            out = self.run(["sacct", "-n", "-X", "-P", "-j", bases, "-o", "JobID,State,Reason"])
            for line in out.stdout.splitlines():
                parts = line.split("|")
                if len(parts) >= 2:
                    states[parts[0]] = (parts[1], parts[2] if len(parts) > 2 else "")
        else:
            out = self.run(["squeue", "-h", "-r", "-t", "all", "-j", bases, "-o", "%i|%T|%r"])
            for line in out.stdout.splitlines():
                parts = line.split("|")
                if len(parts) == 3:
                    states[parts[0]] = (parts[1], parts[2])
        return states

    def cancel(self, jobs: Sequence[Job]) -> None:
        """``scancel`` every given job, in one command."""
        ids = [j.handle["id"] for j in jobs if isinstance(j.handle, dict) and "id" in j.handle]
        if ids:
            self.run(["scancel", *ids])


@hookimpl
def corral_register_launchers(registry: Registry[Launcher]) -> None:
    """Register the SLURM launcher."""
    registry.add(SlurmLauncher)
