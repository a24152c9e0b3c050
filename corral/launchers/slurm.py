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

import contextlib
import logging
import re
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path, PurePosixPath
from time import sleep as pause
from typing import TYPE_CHECKING, Any, Self

from corral.connectors.base import Connector
from corral.connectors.local import LocalConnector
from corral.connectors.ssh import SSHConnector
from corral.core.job import Failure, FailureReason, Job, JobState, Resources, Status, Tracked
from corral.core.launcher import J, Launcher, Origin, check_retries, local_python
from corral.core.resumable import TIME_LIMIT_ENV, WARNING_SIGNAL, ResumableTask
from corral.core.units import parse_duration
from corral.errors import (
    AuthenticationError,
    ConfigError,
    ConnectorError,
    HostKeyError,
    SubmissionError,
)
from corral.host.protocol import SbatchSpec
from corral.host.ranks import environ_for as ranks_environ
from corral.host.slurm import LIMIT
from corral.host.slurm_text import (
    ACTIVE,
    FORGOTTEN,
    SINFO_FORMAT,
    ControllerState,
    Partition,
    combine,
    controller_status,
    header,
    parse_partitions,
    parse_states,
    squeue_answered,
)
from corral.launchers import packing
from corral.launchers.packing import Pack
from corral.launchers.remote import CALL_ATTEMPTS, AgentLauncher, Host, check_workdir
from corral.launchers.slurm_limits import SubmitBudget
from corral.launchers.slurm_script import SlurmOptions, sbatch_options, time_seconds
from corral.plugins.markers import hookimpl

if TYPE_CHECKING:
    from corral.core.workspace import Workspace
    from corral.plugins.registry import Registry

log = logging.getLogger(__name__)

DEFAULT_MAX_ARRAY = 1001
DEFAULT_RETRIES = {"node_fail": 1, "preempted": 3}
_OK: Status = (JobState.SUBMITTED, None)


def _submit_limit(sacctmgr: str, account: str | None) -> int | None:
    """The lowest ``MaxSubmit`` of the user's associations (of ``account`` if given)."""
    limits = []
    for line in sacctmgr.splitlines():
        name, _, value = line.strip().partition("|")
        if value.isdigit() and (account is None or name == account):
            limits.append(int(value))
    return min(limits, default=None)


def _bases(ids: Sequence[str]) -> str:
    """The SLURM job ids (``123``) of array task ids (``123_4``), comma-separated."""
    return ",".join(sorted({i.split("_", 1)[0] for i in ids}))


class SlurmLauncher(AgentLauncher):
    """Submits jobs to SLURM.

    :param connector: ``LocalConnector()`` (default: sbatch on this machine) or an
        ``SSHConnector`` to a login node.
    :param workdir: where job directories live on the cluster (required over SSH; default,
        locally: the experiment's workspace).
    :param python: the interpreter of the jobs (must have corral).
    :param partition: the partition of every job.
    :param account: the account charged.
    :param qos: the quality of service.
    :param constraint: node features required (``--constraint``).
    :param cpus: default CPUs per task (``submit(cpus=...)`` and submit hooks may change a
        job's resources).
    :param gpus: default GPUs per node (``--gres=gpu:N``).
    :param gpu_type: default GPU model (``--gres=gpu:TYPE:N``), e.g. ``"a100"``.
    :param mem: default memory per node (``4G``, ``500M``).
    :param time: default time limit (``2h``, ``90m``, minutes, ``HH:MM:SS``, ``D-HH:MM:SS``).
    :param nodes: default nodes per job.
    :param tasks_per_node: default processes per node (ranks of a distributed job).
    :param torchrun: default for starting one ``torchrun`` per node rather than every rank.
    :param extra: more ``sbatch`` options, ``{"--option": "value"}`` (None for a flag).
    :param setup: shell lines run before each job (``module load ...``).
    :param throttle: at most this many tasks of an array run at once (``%throttle``).
    :param retries: how many times a job that ended for one of these reasons is submitted
        again, by reason (default: ``{"node_fail": 1, "preempted": 3}``); a
        :class:`~corral.core.resumable.ResumableTask` is also resubmitted after ``timeout``.
    :param pack: run jobs packed in a few worker allocations
        (:class:`~corral.launchers.packing.Pack`) rather than each in its own.
    """

    name = "slurm"
    poll_interval = 30.0
    min_poll_interval = 1.0
    gather_delay = 1.0
    follow_check_every = 5.0  # a question to the controller: not every half second

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
        cpus: int = 1,
        gpus: int = 0,
        gpu_type: str | None = None,
        mem: str | None = None,
        time: str | None = None,
        nodes: int = 1,
        tasks_per_node: int = 1,
        torchrun: bool = False,
        extra: Mapping[str, Any] | None = None,
        setup: Sequence[str] = (),
        throttle: int | None = None,
        retries: Mapping[str, int] | None = None,
        pack: Pack | None = None,
    ) -> None:
        connector = connector if connector is not None else LocalConnector()
        remote = not isinstance(connector, LocalConnector)
        if remote and workdir is None:
            raise ConfigError("SlurmLauncher over SSH needs workdir= (a path on the cluster)")
        if workdir is not None:
            check_workdir("SlurmLauncher", workdir)
        python = python or ("python3" if remote else local_python())
        super().__init__(connector, python=python, setup=setup)
        self._kwargs: dict[str, Any] = {
            "connector": connector,
            "workdir": workdir,
            "python": python,
            "partition": partition,
            "account": account,
            "qos": qos,
            "constraint": constraint,
            "cpus": cpus,
            "gpus": gpus,
            "gpu_type": gpu_type,
            "mem": mem,
            "time": time,
            "nodes": nodes,
            "tasks_per_node": tasks_per_node,
            "torchrun": torchrun,
            "extra": extra,
            "setup": setup,
            "throttle": throttle,
            "retries": retries,
            "pack": pack,
        }
        self.options = SlurmOptions.make(
            partition=partition,
            account=account,
            qos=qos,
            constraint=constraint,
            extra=extra,
        )
        self.defaults = Resources(
            cpus=cpus,
            gpus=gpus,
            gpu_type=gpu_type,
            mem=mem,
            time=time,
            nodes=nodes,
            tasks_per_node=tasks_per_node,
            torchrun=torchrun,
        )
        header(sbatch_options(self.defaults, self.options))  # every value checked now
        self.retries = check_retries(
            "SlurmLauncher", DEFAULT_RETRIES if retries is None else retries
        )
        self.throttle = throttle
        self.workdir = workdir
        self.host = Host(connector, python=python, setup=setup, workdir=workdir)
        self.counts: Counter[str] = Counter()
        self._max_array: int | None = None
        self._partitions: dict[str, Partition] | None = None
        self._sacct: bool | None = None
        self.budget: SubmitBudget | None = None
        if pack is not None and not isinstance(pack, Pack):
            raise ConfigError(f"SlurmLauncher(pack=...): expected Pack(...), got {pack!r}")
        self.pack = pack
        self.pack_workers = 0
        """Pack workers queued or running, as the last poll cycle found them."""

    @classmethod
    def for_recorded(cls, origin: Origin) -> Self:
        """A SLURM launcher where the jobs' cluster is, with their python and setup lines."""
        return cls(
            origin.connector,
            workdir=origin.workdir,
            python=origin.python,
            setup=origin.setup,
        )

    def with_(self, **changes: Any) -> SlurmLauncher:
        """A copy with some options changed: ``cluster.with_(partition="short")``."""
        unknown = set(changes) - set(self._kwargs)
        if unknown:
            valid = ", ".join(sorted(self._kwargs))
            raise ConfigError(f"unknown SLURM option {sorted(unknown)[0]!r}; valid: {valid}")
        return SlurmLauncher(**{**self._kwargs, **changes})

    # --- cluster facts, read once ------------------------------------------------------------

    def run(self, argv: list[str]) -> Any:
        """Run a SLURM command where the cluster is, counting it. These commands only read
        or cancel (idempotent), so one whose SSH connection dropped is sent again."""
        self.counts[argv[0]] += 1
        attempts = CALL_ATTEMPTS if self.host.remote else 1
        for attempt in range(1, attempts + 1):
            try:
                return self.connector.run(argv, timeout=120)
            except (AuthenticationError, HostKeyError):
                raise
            except ConnectorError:
                if attempt == attempts:
                    raise
                pause(attempt)
        raise AssertionError("unreachable")

    def max_array_size(self) -> int:
        """The cluster's ``MaxArraySize`` (tasks per array), from ``scontrol show config``."""
        if self._max_array is None:
            out = self.run(["scontrol", "show", "config"])
            found = re.search(r"^MaxArraySize\s*=\s*(\d+)", out.stdout, re.MULTILINE)
            # an array of N tasks has indices 0..N-1, which must stay below MaxArraySize
            size = int(found.group(1)) - 1 if found else DEFAULT_MAX_ARRAY - 1
            if not out.ok:  # the controller did not answer: SLURM's default, for now
                return size
            self._max_array = size
        return self._max_array

    def submit_budget(self) -> SubmitBudget:
        """The room under the cluster's limit on this user's queued jobs (``MaxSubmitJobs``
        of the user's association, read with sacctmgr where accounting works)."""
        if self.budget is None:
            limit = None
            if self.accounting():
                out = self.run(
                    ["sacctmgr", "-n", "-P", "show", "assoc", "where", f"user={self.host.user}",
                     "format=Account,MaxSubmit"]
                )
                limit = _submit_limit(out.stdout, self.options.account)
            self.budget = SubmitBudget(limit)
        return self.budget

    def partitions(self) -> dict[str, Partition]:
        """The cluster's partitions and what their nodes have (one ``sinfo``, read once)."""
        if self._partitions is None:
            out = self.run(["sinfo", "-h", "-o", SINFO_FORMAT])
            if not out.ok:
                tail = (out.stderr.strip().splitlines() or [f"exit {out.returncode}"])[-1]
                raise SubmissionError(f"sinfo on {self.host} failed: {tail}", argv=out.argv)
            self._partitions = parse_partitions(out.stdout)
        return self._partitions

    def capacities(self) -> dict[str, float | frozenset[str]]:
        """What a job may ask in this launcher's partition (the cluster's default one when
        none is set): CPUs, GPUs and memory of its largest node, its GPU models, its nodes,
        its time limit."""
        found = self.partitions()
        wanted = self.options.partition.split(",") if self.options.partition else [
            p.name for p in found.values() if p.default
        ]
        chosen = [found[name] for name in wanted if name in found]
        if not chosen:
            return {}
        offer: dict[str, float | frozenset[str]] = {
            "cpus": max(p.cpus for p in chosen),
            "gpus": max(p.max_gpus for p in chosen),
            "nodes": max(p.nodes for p in chosen),
            "mem": max(p.mem_mb for p in chosen) * 1024.0**2,
        }
        types = frozenset(t for p in chosen for t, n in p.gpus.items() if t and n)
        if types:
            offer["gpu_type"] = types
        with contextlib.suppress(ValueError):  # a limit sinfo printed in a way unknown here
            offer["time"] = max(parse_duration(p.time_limit) for p in chosen)
        return offer

    def capacity(self, jobs: Sequence[Job]) -> int | None:
        """How many of ``jobs`` may be queued now without going over the cluster's limits."""
        return self.submit_budget().room()

    def attach(self, job: Job) -> None:
        """A job found queued or running counts against the limits."""
        self.submit_budget().queued(job)

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

    def planned_root(self, workspace: Workspace) -> Path:
        """The cluster-side workdir; connects only to resolve a ``~`` in it."""
        known = self.host.known_root()
        if known is None and not self.host.remote:
            known = PurePosixPath(workspace.root)
        return Path(known) if known is not None else self.workspace_root(workspace)

    def location(self, workspace: Workspace) -> str:
        """The cluster's filesystem as seen by its jobs."""
        return f"slurm:{self.host}:{self.planned_root(workspace)}"

    def submit_command(self, job: Job) -> list[str]:
        """``sbatch --parsable`` of the array wrapper holding the job (its name is chosen
        when the batch is submitted), where the cluster is."""
        wrapper = job.directory.parents[2] / ".corral" / "arrays" / "<batch>.sh"
        argv = ["sbatch", "--parsable", str(wrapper)]
        if isinstance(self.connector, SSHConnector):
            return ["ssh", str(self.connector.destination), *argv]
        return argv

    def job_options(self, job: Job) -> list[str]:
        """The ``sbatch`` options of ``job``: its resources, the cluster options, and the
        time-limit warning of a :class:`~corral.core.resumable.ResumableTask`."""
        options = sbatch_options(job.resources, self.options)
        if isinstance(job.task, ResumableTask):
            options.append(f"--signal=B:{WARNING_SIGNAL.name[3:]}@{type(job.task).warning}")
        return options

    def job_environ(self, job: Job) -> dict[str, str]:
        """The job's time limit in seconds (``ResumableTask.remaining_time()``), and how a
        distributed job starts its ranks."""
        environ = {}
        if job.resources.time is not None:
            environ[TIME_LIMIT_ENV] = str(time_seconds(str(job.resources.time)))
        environ.update(ranks_environ(job.resources))
        return environ

    def retry_budget(self, job: Job) -> Mapping[FailureReason, int]:
        """How many times ``job`` is submitted again after ending for each reason."""
        return self.retries

    def check(self, job: Job) -> None:
        """Refuse resources SLURM would reject (after submit hooks changed them), and a job
        the pack workers could never run."""
        header(self.job_options(job))
        if self.pack is not None:
            packing.check(self, job)

    def log_refusal(self, why: str) -> None:
        """Say why workers could not be submitted this cycle (the next one tries again)."""
        log.warning("%s: pack workers not submitted yet: %s", self.host, why)

    def render_header(self, job: Job) -> list[str]:
        """``#SBATCH`` lines, so that ``job.sh`` can also be submitted by hand."""
        lines = [f"--job-name=corral-{job.identifier[:12]}", f"--comment={job.relpath}"]
        return header(lines + self.job_options(job))

    # --- the scheduler's calls ------------------------------------------------------------

    def can_wait_for(self, dependency: Job) -> bool:
        """A job waits for a dependency submitted to the same cluster through ``afterok``
        (a packed job: its worker reads the dependency's marker)."""
        if self.pack is not None:
            return packing.can_wait_for(self, dependency)
        return (
            self._slurm_id(dependency) is not None
            and self._same_cluster(dependency)
            # a resumable parent may end as timeout and run again: afterok would cancel us
            and not isinstance(dependency.task, ResumableTask)
        )

    def _same_cluster(self, job: Job) -> bool:
        other = job.launcher
        return isinstance(other, SlurmLauncher) and str(other.host) == str(self.host)

    def submitted(self, jobs: Sequence[Job]) -> str:
        """The SLURM arrays they went out in, and the cluster's host."""
        if self.pack is not None:
            return packing.describe(self, jobs)
        ids = (self._slurm_id(j) for j in jobs)
        arrays = sorted({i.split("_")[0] for i in ids if i}, key=lambda a: (len(a), a))
        where = self.label or self.host
        if not arrays:
            return f"SLURM on {where}"
        return f"SLURM array{'s' if len(arrays) > 1 else ''} {', '.join(arrays)} on {where}"

    @staticmethod
    def _slurm_id(job: Tracked) -> str | None:
        handle = job.handle
        return str(handle["id"]) if isinstance(handle, dict) and "id" in handle else None

    def start(
        self, jobs: Sequence[Job], workspace: Workspace, *, detached: bool = False
    ) -> dict[Job, Status]:
        """One array (one sbatch) per group of jobs with equal options and dependencies.

        Jobs depending on others of the same batch go out after them, in an array that
        waits for them (``afterok``), so a whole chain is queued at once.
        """
        if self.pack is not None:
            return packing.start(self, jobs, workspace)
        root = self.workspace_root(workspace)
        result: dict[Job, Status] = {}
        pending = list(jobs)
        while pending:
            batch = set(pending)
            level = [j for j in pending if not any(d in batch for d in j.dependencies)]
            pending = [j for j in pending if j not in set(level)]
            groups: dict[tuple[tuple[str, ...], tuple[str, ...]], list[Job]] = defaultdict(list)
            for job in level:
                refused = [d.name for d in job.dependencies if result.get(d, _OK)[0].final]
                if refused:  # a parent of this batch was refused by sbatch
                    failure = Failure(
                        FailureReason.DEPENDENCY, f"dependency failed: {', '.join(refused)}"
                    )
                    self.mark_failed(job, failure)
                    result[job] = (JobState.FAILED, failure)
                    continue
                waits_for = tuple(
                    sorted(
                        sid
                        for d in job.dependencies
                        if not d.state.final
                        and self._same_cluster(d)
                        and (sid := self._slurm_id(d)) is not None
                    )
                )
                options = tuple(self.job_options(job))
                groups[(options, waits_for)].append(job)
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
        token = uuid.uuid4().hex[:16]
        spec: SbatchSpec = {
            "path": str(arrays / f"{token}.sh"),
            "token": token,
            "options": options,
            "comment": f"corral:{len(jobs)}:{jobs[0].relpath}",
            "output": str(arrays / "%A_%a.out"),
            "dependency": waits_for,
            "throttle": self.throttle,
        }
        entries = [(j.directory, self.job_files(j, workspace)) for j in jobs]
        snapshots = self.host.snapshots(jobs, PurePosixPath(root))
        answers = self.host.agent.start(self.name, entries, snapshots=snapshots, sbatch=spec)
        self.host.sent(snapshots)
        if any(a.tried for a in answers):
            self.counts["sbatch"] += 1  # the agent ran sbatch once for this batch
        result: dict[Job, Status] = {}
        budget = self.submit_budget()
        for job, answer in zip(jobs, answers, strict=True):
            status = answer.status
            job.handle = answer.handle
            if status[0] is JobState.RUNNING:
                status = (JobState.SUBMITTED, None)
                budget.queued(job)
            elif status[0] is JobState.READY:
                why = status[1].message if status[1] is not None else ""
                status = (JobState.READY, None)
            result[job] = status
        if any(s[0] is JobState.READY for s in result.values()):
            if LIMIT.search(why):
                budget.refused(len(jobs))  # over a limit on queued jobs: they stay ready
            else:
                budget.unanswered()  # SLURM did not answer: they stay ready, no limit learned
            log.warning(
                "%s: %d job(s) held for %.0f s: %s", self.host, len(jobs), budget.paused_for, why
            )
        else:
            budget.accepted()
        return result

    def poll(self, jobs: Sequence[J]) -> dict[J, Status]:
        """One squeue/sacct call for every job; one marker read for those that ended (for
        packed jobs, one agent command per pool)."""
        return packing.poll_split(self, jobs, self._poll)

    def _poll(self, jobs: Sequence[J]) -> dict[J, Status]:
        ids = [sid for j in jobs if (sid := self._slurm_id(j)) is not None]
        seen, answered = self._controller_states(ids)
        result: dict[J, Status] = {}
        ended: list[J] = []
        views: dict[J, Status | None] = {}
        for job in jobs:
            sid = self._slurm_id(job)
            state = seen.get(sid) if sid is not None else None
            view = controller_status(*state) if state is not None else None
            views[job] = view
            if view is not None and not view[0].final:
                result[job] = view
            else:
                ended.append(job)
        if ended:
            markers = self.markers(ended)
            for job in ended:
                status = markers[job]
                if views[job] is None and not answered and (
                    status is None or status[0] is not JobState.DONE
                ):
                    # SLURM did not answer: not gone, perhaps still running; ask next cycle
                    result[job] = (job.state, job.failure)
                    continue
                result[job] = combine(views[job], status)
                if self.budget is not None:  # a client polling its own submissions
                    self.budget.finished(job)
        states = {id(j): s for j, (s, _) in result.items()}
        for job, (_, failure) in result.items():
            if failure is not None and failure.reason is FailureReason.CANCELLED:
                failed = [
                    d.name
                    for d in job.dependencies
                    if states.get(id(d), d.state) is JobState.FAILED
                ]
                if failed:  # cancelled by SLURM because a parent failed (afterok)
                    why = f"dependency failed: {', '.join(failed)}"
                    result[job] = (JobState.FAILED, Failure(FailureReason.DEPENDENCY, why))
        return result

    def _controller_states(self, ids: list[str]) -> tuple[dict[str, ControllerState], bool]:
        """One sacct call where accounting works, else one squeue call; squeue also for the
        jobs sacct does not know yet (slurmdbd learns of a job seconds after sbatch).

        Returns the states found and whether SLURM answered for the others (False: squeue
        got no answer from the controller, so a job it did not list may still run).
        """
        if not ids:
            return {}, True
        states: dict[str, ControllerState] = {}
        if self.accounting():
            out = self.run(
                ["sacct", "-n", "-X", "-P", "-j", _bases(ids), "-o", "JobID,State,Reason"]
            )
            if out.ok:
                states = parse_states(out.stdout, ids)
        missing = [i for i in ids if i not in states]
        if missing:
            # After MinJobAge squeue forgets a job and exits 1 if it knows none: "gone".
            out = self.run(
                ["squeue", "-h", "-r", "-t", "all", "-j", _bases(missing), "-o", "%i|%T|%r"]
            )
            if not squeue_answered(out.returncode, out.stderr):
                log.warning("%s: squeue got no answer (%s); asking again later", self.host,
                            (out.stderr.strip().splitlines() or [f"exit {out.returncode}"])[-1])
                return states, False
            states.update(parse_states(out.stdout, missing))
        return states, True

    def cancel(self, jobs: Sequence[Tracked]) -> None:
        """``scancel`` every given job, in one command (a packed job: its worker stops it)."""
        packed = [j for j in jobs if packing.is_packed(j)]
        if packed:
            packing.poll(self, [], cancel=packed)
        ids = [sid for j in jobs if (sid := self._slurm_id(j)) is not None]
        if ids:
            self.run(["scancel", *ids])

    def cancel_outcome(self, job: Tracked) -> str:
        """``cancelled (SLURM job ID)``, or the packed job's stop asked of its worker."""
        if packing.is_packed(job):
            return "stop asked of its pack worker (SIGTERM, then SIGKILL after 10 s)"
        return f"cancelled (SLURM job {self._slurm_id(job)})"

    def follow(self, job: Tracked, *, stderr: bool = False, interval: float = 0.2) -> Iterator[str]:
        """Yield a job's stdout (or stderr) as it grows, until the job ends: its marker, or
        SLURM ending it without one (asked every :attr:`follow_check_every` seconds). Over
        SSH it is one stream: a loop on the login node does the watching."""
        if not isinstance(self.connector, SSHConnector):
            yield from super().follow(job, stderr=stderr, interval=interval)
            return
        path = str(job.directory / ("stderr" if stderr else "stdout"))
        every = int(self.follow_check_every)
        active = "|".join(f"{state}*" for state in ACTIVE)
        script = (
            'tail -n +1 -F "$1" 2>/dev/null & t=$!; n=0; '
            'while [ ! -e "$2/done" ] && [ ! -e "$2/failed" ]; do '
            f'sleep 1; n=$((n + 1)); [ $((n % {every})) -eq 0 ] && [ -n "$3" ] || continue; '
            's=$(squeue -h -j "$3" -t all -o %T 2>&1); r=$?; '
            f'case "$s" in *"{FORGOTTEN}"*) break ;; esac; '
            '[ "$r" -eq 0 ] || continue; '  # no answer from the controller: ask again later
            f'case "$s" in {active}) ;; *) break ;; esac; '
            "done; sleep 1; kill $t"
        )
        slurm_id = self._slurm_id(job) or ""
        argv = ["sh", "-c", script, "follow", path, f"{job.directory}/.corral", slurm_id]
        yield from self.connector.stream(argv)


@hookimpl
def corral_register_launchers(registry: Registry[Launcher]) -> None:
    """Register the SLURM launcher."""
    registry.add(SlurmLauncher)
