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

COMMANDS: Final = ("version", "recover", "start", "poll", "cancel", "fail", "inspect")
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


class StartRequest(TypedDict):
    """``start``: write these jobs' files and start each not done nor running yet."""

    launcher: str
    jobs: list[StartJob]
    snapshots: NotRequired[list[SnapshotEntry]]
    sbatch: NotRequired[SbatchSpec]  #: present: one array; absent: detached processes


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
    ) -> list[Started]:
        """Write and start each job (unless done or running); one array with ``sbatch``."""
        request: StartRequest = {
            "launcher": launcher,
            "jobs": [{"dir": str(d), "files": dict(files)} for d, files in jobs],
        }
        if snapshots:
            request["snapshots"] = list(snapshots)
        if sbatch is not None:
            request["sbatch"] = sbatch
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
