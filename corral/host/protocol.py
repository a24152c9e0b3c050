"""What a launcher and the host-side agent say to each other: every request and answer,
typed once, encoded and decoded here.

A launcher sends ``python -m corral.host.agent COMMAND`` with a JSON request on stdin and
reads a JSON answer on stdout (or, for this machine, calls the agent in-process with the
same JSON). :class:`AgentClient` is the launcher's side: typed methods that build each
request and decode its answer. The agent's side is :mod:`corral.host.agent`, which reads the
same shapes.

A job's status travels as ``[state, failure]`` (``failure`` the JSON of the job's
``failed`` marker, or null), or null when a job has none yet.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any, Final, NotRequired, TypedDict

from corral.core.job import Failure, JobState, Status
from corral.errors import SubmissionError

COMMANDS: Final = ("version", "recover", "start", "poll", "cancel", "fail", "inspect", "pack")
"""The agent's commands, each one round trip for a whole batch of jobs."""

WireStatus = list[Any] | None
"""A status on the wire: ``[state, failure JSON or null]``, or null."""


def encode_status(status: Status | None) -> WireStatus:
    """A status as it travels."""
    if status is None:
        return None
    state, failure = status
    return [state.value, failure.to_json() if failure is not None else None]


def decode_status(data: Any) -> Status | None:
    """A status from the wire (None for null)."""
    if data is None:
        return None
    state, failure = data
    return JobState(state), (Failure.from_json(failure) if failure is not None else None)


# --- the requests and answers --------------------------------------------------------------


class VersionAnswer(TypedDict):
    """``version``: what the host runs, checked before the first submission."""

    corral: str  #: corral's version on the host
    python: str  #: the Python version of the agent's interpreter
    executable: str  #: that interpreter's path
    home: str  #: the user's home directory (a workdir's ``~``)


class RecoverRequest(TypedDict):
    """``recover``: which of these job directories is done or still running."""

    launcher: str  #: the launcher kind ("slurm": liveness from squeue; else pid + start time)
    dirs: list[str]  #: job directories on the host


class RecoverAnswer(TypedDict):
    """One job of a ``recover`` answer."""

    status: WireStatus  #: done, running, or null (to start)
    handle: Any  #: the recorded handle of a job found running
    unknown: bool  #: whether it still runs could not be told (SLURM did not answer)


class StartJob(TypedDict):
    """One job of a ``start`` request."""

    dir: str  #: its directory on the host
    files: dict[str, str]  #: its files by name relative to the directory (job.sh, ...)


class SnapshotEntry(TypedDict):
    """A code snapshot a ``start`` request brings to the host."""

    hash: str  #: the snapshot's content hash
    dir: str  #: where it goes (``<workdir>/code/<hash>``)
    archive: NotRequired[str]  #: its files, packed (for another host)
    source: NotRequired[str]  #: its store on this machine (copied from there)


class SbatchSpec(TypedDict):
    """How a ``start`` request's jobs go out as one SLURM array."""

    path: str  #: the array wrapper's path
    token: str  #: unique per submission (the array's name; finds a lost submission again)
    options: list[str]  #: ``--option=value`` lines of the array
    comment: str  #: the array's ``--comment``
    output: str  #: the wrapper's own output file pattern
    dependency: NotRequired[list[str]]  #: SLURM job ids the array waits for (``afterok``)
    throttle: NotRequired[int | None]  #: at most this many of its tasks at once


class WorkerSpec(TypedDict):
    """How the workers of a pack pool are submitted (one SLURM array per submission)."""

    options: list[str]  #: ``--option=value`` lines of each worker's allocation
    max: int  #: at most this many workers at once
    slots: int  #: job slots (CPUs) of each worker
    gpus: int  #: GPUs of each worker
    idle: float  #: seconds a worker waits for work before it leaves
    time: float | None  #: seconds of each worker's allocation
    python: str  #: the workers' interpreter
    setup: list[str]  #: shell lines run before a worker starts
    backend: NotRequired[str]  #: "slurm" (array tasks; the default) or "process" (SSH host)


class PackedJob(TypedDict):
    """One job of a packed ``start``: what a worker checks before it claims it."""

    deps: list[str]  #: directories of the jobs it waits for
    cpus: int
    gpus: int
    time: float | None  #: seconds it declared
    max_attempts: int  #: attempts before a job whose worker keeps ending is ``lost``


class PackSpec(TypedDict):
    """A ``start`` whose jobs go to a pack pool's queue instead of their own allocations."""

    pool: str  #: the pool's directory
    jobs: dict[str, PackedJob]  #: by job directory
    workers: WorkerSpec


class StartRequest(TypedDict):
    """``start``: write these jobs' files and start each not done nor running yet."""

    launcher: str
    jobs: list[StartJob]
    snapshots: NotRequired[list[SnapshotEntry]]
    sbatch: NotRequired[SbatchSpec]  #: present: one array; absent: detached processes
    pack: NotRequired[PackSpec]  #: present: queued for the pool's workers


class StartAnswer(TypedDict):
    """One job of a ``start`` answer."""

    status: WireStatus  #: running (started now or before), done, ready (not yet), failed
    handle: Any  #: its handle (pid + start time, or SLURM ids)
    tried: bool  #: whether it went to the spawn (sbatch ran for it)


class PolledJob(TypedDict):
    """One job of a ``poll`` request."""

    dir: str
    handle: Any


class PollRequest(TypedDict):
    """``poll``: the status of started jobs (markers and liveness together)."""

    jobs: list[PolledJob]


class PollAnswer(TypedDict):
    """One job of a ``poll`` answer."""

    status: WireStatus


class CancelRequest(TypedDict):
    """``cancel``: SIGTERM each job's process group, SIGKILL what is left after ``grace``."""

    handles: list[Any]
    dirs: list[str]  #: aligned with ``handles``: where a ``killed`` marker goes
    grace: float


class CancelAnswer(TypedDict):
    """The ``cancel`` answer."""

    killed: list[int]  #: pids whose group needed SIGKILL


class FailedJob(TypedDict):
    """One job of a ``fail`` request."""

    dir: str
    failure: dict[str, Any]  #: the ``failed`` marker's JSON


class FailRequest(TypedDict):
    """``fail``: write the ``failed`` marker of jobs that could not run."""

    jobs: list[FailedJob]


class InspectRequest(TypedDict):
    """``inspect``: each directory's final marker."""

    dirs: list[str]


class PackRequest(TypedDict):
    """``pack``: one poll cycle of a pool: the status of its jobs, the claims of ended
    workers given back, workers submitted while jobs wait, cancellations asked."""

    pool: str
    dirs: list[str]  #: the jobs asked about
    workers: WorkerSpec
    cancel: list[str]  #: job directories to stop


class PackedStatus(TypedDict):
    """One job of a ``pack`` answer."""

    status: WireStatus
    worker: str | None  #: the worker running (or that ran) it


class PackAnswer(TypedDict):
    """The ``pack`` answer."""

    jobs: list[PackedStatus]
    workers: int  #: workers queued or running now
    submitted: int  #: workers submitted by this call
    requeued: int  #: jobs given back to the queue (their worker ended)
    refused: str  #: why workers could not be submitted now ("" when they could)


# --- the launcher's side -----------------------------------------------------------------


@dataclass(frozen=True)
class Recovered:
    """One job of a ``recover`` answer, decoded."""

    status: Status | None
    handle: Any
    unknown: bool


@dataclass(frozen=True)
class Started:
    """One job of a ``start`` answer, decoded."""

    status: Status
    handle: Any
    tried: bool


Send = Callable[[str, Any], Any]
"""Runs an agent command with a JSON-able request; its decoded JSON answer."""


def roundtrip(value: Any) -> Any:
    """``value`` as the other side would read it (what an in-process call passes)."""
    return json.loads(json.dumps(value))


class AgentClient:
    """The agent's commands as typed methods, over ``send`` (SSH or in-process)."""

    def __init__(self, send: Send) -> None:
        self._send = send

    def version(self) -> VersionAnswer:
        """The host's corral and Python."""
        answer: VersionAnswer = self._send("version", {})
        return answer

    def recover(self, launcher: str, dirs: Sequence[str | PurePath]) -> list[Recovered]:
        """Done, still running, or to start, for each directory."""
        request: RecoverRequest = {"launcher": launcher, "dirs": [str(d) for d in dirs]}
        answers: list[RecoverAnswer] = self._send("recover", request)
        return [
            Recovered(decode_status(a["status"]), a["handle"], bool(a.get("unknown")))
            for a in _aligned(answers, dirs, "recover")
        ]

    def start(
        self,
        launcher: str,
        jobs: Sequence[tuple[str | PurePath, Mapping[str, str]]],
        *,
        snapshots: Sequence[SnapshotEntry] = (),
        sbatch: SbatchSpec | None = None,
        pack: PackSpec | None = None,
    ) -> list[Started]:
        """Write and start each job (unless done or running); one array with ``sbatch``,
        or queued for a pack pool's workers with ``pack``."""
        request: StartRequest = {
            "launcher": launcher,
            "jobs": [{"dir": str(d), "files": dict(files)} for d, files in jobs],
        }
        if snapshots:
            request["snapshots"] = list(snapshots)
        if sbatch is not None:
            request["sbatch"] = sbatch
        if pack is not None:
            request["pack"] = pack
        answers: list[StartAnswer] = self._send("start", request)
        return [
            Started(_known(a["status"], "start"), a["handle"], bool(a.get("tried")))
            for a in _aligned(answers, jobs, "start")
        ]

    def poll(self, jobs: Sequence[tuple[str | PurePath, Any]]) -> list[Status]:
        """Markers and liveness of each started job."""
        request: PollRequest = {"jobs": [{"dir": str(d), "handle": h} for d, h in jobs]}
        answers: list[PollAnswer] = self._send("poll", request)
        return [_known(a["status"], "poll") for a in _aligned(answers, jobs, "poll")]

    def cancel(self, jobs: Sequence[tuple[Any, str | PurePath]], grace: float) -> list[int]:
        """Stop each ``(handle, directory)``; the pids that needed SIGKILL."""
        request: CancelRequest = {
            "handles": [h for h, _ in jobs],
            "dirs": [str(d) for _, d in jobs],
            "grace": float(grace),
        }
        answer: CancelAnswer = self._send("cancel", request)
        return [int(pid) for pid in answer["killed"]]

    def fail(self, failures: Sequence[tuple[str | PurePath, Failure]]) -> None:
        """Write each job's ``failed`` marker."""
        if failures:
            request: FailRequest = {
                "jobs": [{"dir": str(d), "failure": f.to_json()} for d, f in failures]
            }
            self._send("fail", request)

    def inspect(self, dirs: Sequence[str | PurePath]) -> list[Status | None]:
        """Each directory's final marker, if any."""
        request: InspectRequest = {"dirs": [str(d) for d in dirs]}
        answers: list[WireStatus] = self._send("inspect", request)
        return [decode_status(a) for a in _aligned(answers, dirs, "inspect")]


    def pack(
        self,
        pool: str,
        dirs: Sequence[str | PurePath],
        workers: WorkerSpec,
        cancel: Sequence[str | PurePath] = (),
    ) -> tuple[list[tuple[Status, str | None]], PackAnswer]:
        """One poll cycle of a pack pool: each job's status and worker, and the answer."""
        request: PackRequest = {
            "pool": pool,
            "dirs": [str(d) for d in dirs],
            "workers": workers,
            "cancel": [str(d) for d in cancel],
        }
        answer: PackAnswer = self._send("pack", request)
        jobs = _aligned(answer.get("jobs") if isinstance(answer, dict) else None, dirs, "pack")
        return [(_known(j["status"], "pack"), j.get("worker")) for j in jobs], answer


def _known(data: WireStatus, command: str) -> Status:
    """A status that an answer must give (a started or polled job always has one)."""
    status = decode_status(data)
    if status is None:
        raise SubmissionError(f"the agent's {command} answer has a job without a status")
    return status


def _aligned(answers: Any, asked: Sequence[Any], command: str) -> list[Any]:
    """The per-job answers, one for each job asked about (else the answer is not ours)."""
    if not isinstance(answers, list) or len(answers) != len(asked):
        raise SubmissionError(
            f"the agent's {command} answer does not match its request "
            f"({len(asked)} job(s) asked about)"
        )
    return answers
