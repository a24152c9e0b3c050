"""``Job``: one submitted task, with its environment, resources, directory and state."""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from corral.errors import ConfigError

if TYPE_CHECKING:
    from corral.core.launcher import Launcher
    from corral.core.snapshot import Snapshot
    from corral.core.task import Task


_SURROGATES = re.compile("[\ud800-\udfff]")
_GPU_TYPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


def check_resource(name: str, value: Any) -> Any:
    """``value`` if it is valid for the resource ``name``, else a one-line ConfigError."""
    from corral.core import units

    whole = isinstance(value, int) and not isinstance(value, bool)
    if name in ("cpus", "nodes", "tasks_per_node") and not (whole and value >= 1):
        raise ConfigError(f"resource {name} must be a positive int, got {value!r}")
    if name == "gpus" and not (whole and value >= 0):
        raise ConfigError(f"resource gpus must be an int >= 0, got {value!r}")
    if name == "gpu_type" and value is not None and not (
        isinstance(value, str) and _GPU_TYPE.match(value)
    ):
        raise ConfigError(
            f"resource gpu_type must be a GPU model name like 'a100' or None, got {value!r}"
        )
    if name == "torchrun" and not isinstance(value, bool):
        raise ConfigError(f"resource torchrun must be True or False, got {value!r}")
    if name in ("mem", "time") and value is not None:
        if not (whole or isinstance(value, str)):
            example = "'4G'" if name == "mem" else "'2h' or '2:00:00'"
            raise ConfigError(
                f"resource {name} must be a str like {example} or None, got {value!r}"
            )
        parse = units.parse_size if name == "mem" else units.parse_duration
        try:
            parse(value)
        except ValueError as exc:
            raise ConfigError(f"resource {name} {value!r}: expected {exc}") from None
    return value


class JobState(enum.StrEnum):
    """Where a job is: the one vocabulary of job states.

    An experiment's scheduler moves a job ``waiting → ready → submitted → running →
    done | failed``. Reading a workspace from its files (``corral jobs ls``) also finds
    ``created`` (files written, never started), ``lost`` (its process ended without a
    result), ``unknown`` (started on another machine, whose processes cannot be seen from
    here) and ``not submitted`` (a run's record names a job that has no directory: its
client stopped before submitting it, or it was removed since; running the script again
submits it).

    A state is a ``str`` (``JobState.DONE == "done"``); the groups of states that commands
    act on are its properties.
    """

    CREATED = "created"
    WAITING = "waiting"
    READY = "ready"
    SUBMITTED = "submitted"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    LOST = "lost"
    UNKNOWN = "unknown"
    NOT_SUBMITTED = "not submitted"

    @property
    def final(self) -> bool:
        """Done or failed: the job will not change state any more (in this run)."""
        return self in _FINAL

    @property
    def ended(self) -> bool:
        """Final, lost or not submitted: nothing changes it but another run."""
        return self in _ENDED

    @property
    def in_flight(self) -> bool:
        """Submitted or running: started, not over."""
        return self in _IN_FLIGHT

    @property
    def removable(self) -> bool:
        """Over, or never started: ``corral jobs rm`` may remove it."""
        return self in _REMOVABLE

    @property
    def cleanable(self) -> bool:
        """Failed, lost or never started: what ``corral jobs clean`` removes."""
        return self in _CLEANABLE

    @property
    def progress(self) -> JobState:
        """The scheduler's state that a job read from its files is shown as (a job created
        but not started, or not submitted, is waiting; one on another machine submitted;
        lost counts as failed)."""
        return _PROGRESS.get(self, JobState.FAILED)


_FINAL = frozenset({JobState.DONE, JobState.FAILED})
_ENDED = _FINAL | {JobState.LOST, JobState.NOT_SUBMITTED}
_IN_FLIGHT = frozenset({JobState.SUBMITTED, JobState.RUNNING})
_REMOVABLE = frozenset({JobState.DONE, JobState.FAILED, JobState.LOST, JobState.CREATED})
_CLEANABLE = frozenset({JobState.FAILED, JobState.LOST, JobState.CREATED})
_PROGRESS = {
    JobState.CREATED: JobState.WAITING,
    JobState.NOT_SUBMITTED: JobState.WAITING,
    JobState.WAITING: JobState.WAITING,
    JobState.READY: JobState.READY,
    JobState.SUBMITTED: JobState.SUBMITTED,
    JobState.RUNNING: JobState.RUNNING,
    JobState.UNKNOWN: JobState.SUBMITTED,
    JobState.DONE: JobState.DONE,
}


class FailureReason(enum.Enum):
    """Why a job failed."""

    FAILED = "failed"  # non-zero exit or an exception in execute()
    KILLED = "killed"  # ended by a signal
    DEPENDENCY = "dependency"  # a job it depends on failed; it was not run
    LOST = "lost"  # the process vanished without leaving a final state
    IMPORT = "import"  # the job could not import its task's module or class
    TIMEOUT = "timeout"  # over its time limit (batch schedulers)
    OUT_OF_MEMORY = "oom"  # over its memory limit
    CANCELLED = "cancelled"
    NODE_FAIL = "node_fail"
    PREEMPTED = "preempted"
    REJECTED = "rejected"  # the scheduler refused the submission (bad partition, account...)


class Failure(NamedTuple):
    """A failed job's reason, as stored in its ``.corral/failed`` marker."""

    reason: FailureReason
    message: str = ""
    exit_code: int | None = None
    signal: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The marker's JSON content."""
        data: dict[str, Any] = {"reason": self.reason.value, "message": self.message}
        if self.exit_code is not None:
            data["exit_code"] = self.exit_code
        if self.signal is not None:
            data["signal"] = self.signal
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Failure:
        """Read a marker's JSON content (an unknown reason reads as ``failed``)."""
        try:
            reason = FailureReason(data.get("reason", "failed"))
        except ValueError:
            reason = FailureReason.FAILED
        # A message made of bytes that were not UTF-8 holds lone surrogates, which no
        # terminal or file can take: they become U+FFFD here, for every reader.
        message = _SURROGATES.sub("\ufffd", str(data.get("message", "")))
        return cls(reason, message, data.get("exit_code"), data.get("signal"))


Status = tuple[JobState, Failure | None]
"""A job's state, with the failure when it failed."""


class Deferred(Exception):
    """Raised by a launcher's spawn that could not start its jobs *yet* (a scheduler's
    submission limit, an overloaded controller), or by a liveness check that could not tell
    whether they still run: they stay ready, with no failure recorded."""


class Tracked(Protocol):
    """What a launcher reads of a job to poll, cancel or follow it: a :class:`Job` of an
    experiment, or a job found in a workspace by ``corral jobs``."""

    @property
    def name(self) -> str: ...
    @property
    def directory(self) -> Path: ...
    @property
    def handle(self) -> Any: ...
    @property
    def state(self) -> JobState: ...
    @property
    def failure(self) -> Failure | None: ...
    @property
    def dependencies(self) -> Sequence[Tracked]: ...
    def __hash__(self) -> int: ...


class Secret:
    """An environment value kept out of ``job.sh``, ``params.json``, logs and listings:
    ``job.environ["TOKEN"] = Secret("...")``. It is written only to the job's owner-only
    ``.corral/secrets.env``, which the job script sources."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise ConfigError(f"Secret takes a str, got {type(value).__name__}")
        self._value = value

    def reveal(self) -> str:
        """The secret value itself."""
        return self._value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash((Secret, self._value))

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__


class Resources:
    """What a job asks of its launcher: set by the launcher's defaults, ``submit(...)`` and
    submit hooks, per job.

    :param cpus: CPUs of each task (a slot each on local and SSH hosts).
    :param gpus: GPUs of each node the job runs on (on local and SSH hosts: GPU slots,
        given as ``CUDA_VISIBLE_DEVICES``).
    :param gpu_type: the GPU model wanted (``"a100"``; SLURM's ``--gres=gpu:a100:N``).
    :param mem: memory of each node (``16G``, ``512M``; a bare number is megabytes).
    :param time: the time limit (``2h``, ``90m``, ``1-12:00:00``, SLURM's ``HH:MM:SS``).
    :param nodes: nodes of a multi-node job (SLURM).
    :param tasks_per_node: processes per node; with more than one in all, each is a rank
        of a distributed job (``self.__rank__``; SLURM).
    :param torchrun: start one ``torchrun`` per node, which starts the node's ranks,
        instead of every rank directly.
    """

    __slots__ = ("cpus", "gpu_type", "gpus", "mem", "nodes", "tasks_per_node", "time", "torchrun")
    FIELDS = ("cpus", "gpus", "gpu_type", "mem", "time", "nodes", "tasks_per_node", "torchrun")
    """The resources, in the order they are shown."""

    def __init__(
        self,
        cpus: int = 1,
        gpus: int = 0,
        mem: str | None = None,
        time: str | None = None,
        *,
        gpu_type: str | None = None,
        nodes: int = 1,
        tasks_per_node: int = 1,
        torchrun: bool = False,
    ) -> None:
        self.cpus = cpus
        self.gpus = gpus
        self.gpu_type = gpu_type
        self.mem = mem
        self.time = time
        self.nodes = nodes
        self.tasks_per_node = tasks_per_node
        self.torchrun = torchrun

    def __setattr__(self, name: str, value: Any) -> None:
        # Checked here, so that a submit hook's mistake is refused on its own line.
        if name not in self.FIELDS:
            from corral.errors import did_you_mean

            valid = ", ".join(sorted(self.FIELDS))
            hint = did_you_mean(name, self.FIELDS)
            raise ConfigError(f"unknown resource {name!r}{hint}; valid: {valid}")
        object.__setattr__(self, name, check_resource(name, value))

    def check(self) -> None:
        """Refuse resources whose fields contradict each other (one line, ConfigError)."""
        if self.gpu_type is not None and not self.gpus:
            raise ConfigError(
                f"gpu_type {self.gpu_type!r} asks for a GPU model, but gpus=0: give gpus >= 1"
            )
        if self.torchrun and self.tasks == 1:
            raise ConfigError(
                "torchrun=True starts the ranks of a distributed job: give tasks_per_node > 1 "
                "or nodes > 1"
            )

    @property
    def tasks(self) -> int:
        """Processes in all: ``nodes * tasks_per_node`` (the world size of a distributed job)."""
        return self.nodes * self.tasks_per_node

    def update(self, **changes: Any) -> None:
        """Set several fields; an unknown name lists the valid ones."""
        for key, value in changes.items():
            setattr(self, key, value)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        return {name: getattr(self, name) for name in self.FIELDS}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Resources) and self.to_json() == other.to_json()

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return "Resources(" + ", ".join(f"{k}={v!r}" for k, v in self.to_json().items()) + ")"


class Job:
    """A task on its way through a launcher.

    Submit hooks see it before submission: ``environ`` and ``resources`` changes reach the job.
    """

    def __init__(
        self,
        task: Task,
        identifier: str,
        type_id: str,
        directory: Path,
        launcher: Launcher,
        dependencies: list[Job] | None = None,
    ) -> None:
        self.task = task
        self.identifier = identifier
        self.type_id = type_id
        self.directory = directory
        self.launcher = launcher
        self.dependencies: list[Job] = dependencies if dependencies is not None else []
        self.environ: dict[str, str | Secret] = {}
        self.resources = Resources()
        self.state = JobState.WAITING
        self.failure: Failure | None = None
        self.handle: Any = None
        self.retries = 0
        """How many times the job was submitted again (see :attr:`attempts`)."""
        self.max_retries: int | None = None
        """``submit(max_retries=)``: a ResumableTask's budget for this job (None: the
        class's ``max_retries``)."""
        self.found: JobState | None = None
        """What the first look at it found: done by an earlier run, or running (re-attached);
        None when this run started it, or has not yet."""
        self.attempts: list[Failure] = []
        """How each earlier attempt of the job ended (a node that died, a preemption, ...),
        oldest first; the job was submitted again after each."""
        self.record: Path | None = None  # the local pointer of a job that runs elsewhere
        self.snapshot: Snapshot | None = None
        """The code snapshot the job imports its classes from (None: the live code)."""
        self.provenance: dict[str, Any] | None = None
        """What its submission recorded (see :mod:`corral.core.provenance`)."""

    def check_environ(self) -> None:
        """Refuse what an environment cannot hold: a bad variable name, a value that is not
        a str (or :class:`Secret`), a NUL byte."""
        from corral.connectors.base import check_env_name

        for name, value in self.environ.items():
            if not isinstance(name, str):
                raise ConfigError(
                    f"{self.name}: environment variable name {name!r}: expected a str"
                )
            try:
                check_env_name(name)
            except ConfigError as exc:
                raise ConfigError(f"{self.name}: {exc}") from None
            text = value.reveal() if isinstance(value, Secret) else value
            if not isinstance(text, str):
                raise ConfigError(
                    f"{self.name}: environment variable {name}: expected a str or a Secret, "
                    f"got {type(value).__name__}"
                )
            if "\0" in text:
                raise ConfigError(
                    f"{self.name}: environment variable {name}: the value holds a NUL byte, "
                    "which an environment cannot"
                )

    @property
    def name(self) -> str:
        """``TypeName/identifier-prefix``: short and readable."""
        return f"{self.type_id.rsplit('.', 1)[-1]}/{self.identifier[:12]}"

    @property
    def relpath(self) -> str:
        """The job directory relative to the workspace: ``jobs/<type id>/<identifier>``."""
        return f"jobs/{self.type_id}/{self.identifier}"

    @property
    def stdout(self) -> Path:
        """The path of the job's standard output."""
        return self.directory / "stdout"

    @property
    def stderr(self) -> Path:
        """The path of the job's standard error."""
        return self.directory / "stderr"

    def __repr__(self) -> str:
        return f"<Job {self.name} {self.state.value}>"
