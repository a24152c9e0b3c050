"""The SLURM side of :mod:`corral.host.agent`: runs where ``sbatch`` is (this machine or a
login node).

- :func:`sbatch_spawn` submits a batch of job directories as one job array. Before ``sbatch``
  it writes each job's ``.corral/submitting.json`` (the array's unique job name and the
  job's index), so that a submission whose agent died before recording the SLURM id is
  found again by name instead of being submitted twice (:func:`resolve_submissions`).
- :func:`alive` tells, with one ``squeue`` call, which recorded jobs SLURM still runs or queues.

When the controller does not answer, a job it may still run is never taken for gone: the
liveness check and the lookup by name raise :class:`~corral.core.job.Deferred`, and the
jobs wait (nothing is submitted again) until it answers.

Every SLURM command runs without the caller's ``SLURM_*`` variables, but ``SLURM_CONF`` (where
the cluster's configuration is): a submission from inside a job must not inherit the job's
options.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from corral.core.job import Deferred
from corral.core.workspace import LAUNCH, Writer, read_json, state_dir
from corral.errors import SubmissionError
from corral.host.protocol import SbatchSpec
from corral.host.slurm_text import (
    ACTIVE,
    array_wrapper,
    explain_refusal,
    parse_partition_names,
    parse_states,
    squeue_answered,
)

SUBMITTING = "submitting.json"
LIMIT = re.compile(
    r"MaxSubmitJob|SubmitJobLimit|job submit limit|MaxJobCount|Resource temporarily unavailable"
)
"""sbatch refused the jobs for a limit on queued jobs: submit them later."""
TRANSIENT = re.compile(
    r"Socket timed out|Unable to contact slurm controller|Connection refused"
    r"|temporarily unable|Zero Bytes were transmitted"
)
"""The controller did not answer: try again, then later."""
RETRY_PAUSES = (1.0, 2.0, 4.0)
NAME_PREFIX = "corral-"
TIMEOUT = 120


KEPT = frozenset({"SLURM_CONF"})
"""``SLURM_*`` variables that say where the cluster is, not what the caller's job asked."""


def clean_env() -> dict[str, str]:
    """This environment without the ``SLURM_*`` variables a job inherits (``KEPT`` stays)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("SLURM_") or k in KEPT}


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, capture_output=True, text=True, env=clean_env(), timeout=TIMEOUT, check=False
    )


def _bases(ids: Sequence[str]) -> str:
    return ",".join(sorted({i.split("_", 1)[0] for i in ids}))


def _unanswered(out: subprocess.CompletedProcess[str]) -> Deferred:
    why = out.stderr.strip().splitlines()[-1:] or [f"exit code {out.returncode}"]
    return Deferred(f"{out.args[0]} got no answer from SLURM: {why[0]}")


def states(ids: Sequence[str]) -> dict[str, str]:
    """``{array task id: SLURM state}`` from one ``squeue`` call (forgotten jobs absent).

    Raises :class:`Deferred` when the controller did not answer.
    """
    if not ids:
        return {}
    # After MinJobAge squeue forgets a job (and exits 1 if it knows none): gone, not alive.
    out = _run(["squeue", "-h", "-r", "-t", "all", "-j", _bases(ids), "-o", "%i|%T|%r"])
    if not squeue_answered(out.returncode, out.stderr):
        raise _unanswered(out)
    return {task: state for task, (state, _) in parse_states(out.stdout, ids).items()}


def alive(handles: list[Any]) -> list[bool]:
    """Whether SLURM still queues or runs each recorded job (a packed job: whether it is
    still in its pool's queue or claimed)."""
    from corral.host import pack

    packed = [h for h in handles if pack.is_packed(h)]
    in_pool = dict(zip(map(id, packed), pack.alive(packed), strict=True)) if packed else {}
    ids = [str(h["id"]) for h in handles if isinstance(h, dict) and "id" in h]
    known = states(ids)
    return [
        in_pool[id(h)] if id(h) in in_pool
        else isinstance(h, dict) and known.get(str(h.get("id", ""))) in ACTIVE
        for h in handles
    ]


def sbatch_spawn(spec: SbatchSpec, write: Writer) -> Callable[[list[Path]], list[Any]]:
    """A spawn for :func:`corral.host.jobs.start` that submits its batch as one array."""

    def spawn(dirs: list[Path]) -> list[Any]:
        wrapper = Path(spec["path"])
        wrapper.parent.mkdir(parents=True, exist_ok=True)
        token = spec["token"]
        text = array_wrapper(
            [str(d) for d in dirs],
            spec["options"],
            name=NAME_PREFIX + token,
            comment=spec["comment"],
            output=spec["output"],
            dependency=spec.get("dependency", []),
            throttle=spec.get("throttle"),
        )
        write(wrapper, text, 0o755)
        for index, job_dir in enumerate(dirs):
            intent = {"token": token, "index": index, "wrapper": str(wrapper)}
            write(state_dir(job_dir) / SUBMITTING, json.dumps(intent), 0o644)
        argv = ["sbatch", "--parsable", str(wrapper)]
        done = _run(argv)
        for pause in RETRY_PAUSES:
            if done.returncode == 0 or not TRANSIENT.search(done.stderr):
                break
            time.sleep(pause)
            done = _run(argv)
        if done.returncode != 0:
            for job_dir in dirs:
                with contextlib.suppress(OSError):
                    (state_dir(job_dir) / SUBMITTING).unlink()
            if LIMIT.search(done.stderr) or TRANSIENT.search(done.stderr):
                raise Deferred(done.stderr.strip())
            why = explain_refusal(done.stderr, spec["options"], _partitions(done.stderr))
            # the job's failure is the last stderr line: the refusal, explained
            raise SubmissionError(why, argv=argv, returncode=done.returncode, stderr=why)
        array = done.stdout.strip().split(";")[0]
        return [_handle(array, index, token, str(wrapper)) for index in range(len(dirs))]

    return spawn


def _partitions(refusal: str) -> list[str]:
    """For a refusal about a partition, the valid ones (``sinfo``, in the same round trip);
    none when sinfo does not answer: the refusal itself matters more."""
    if "partition" not in refusal.lower():
        return []
    try:
        listed = _run(["sinfo", "-h", "-o", "%R"])
    except (OSError, subprocess.SubprocessError):
        return []
    return parse_partition_names(listed.stdout) if listed.returncode == 0 else []


def _handle(array: str, index: int, token: str, wrapper: str) -> dict[str, Any]:
    return {"id": f"{array}_{index}", "array": array, "token": token, "wrapper": wrapper}


def resolve_submissions(dirs: Sequence[Path], *, write: Writer) -> int:
    """Record the SLURM id of submissions whose agent died between ``sbatch`` and writing
    ``launch.json``, found by the array's unique job name; returns how many were found.

    Costs nothing (no SLURM call) unless such a directory exists.
    """
    unresolved: dict[Path, dict[str, Any]] = {}
    for job_dir in dirs:
        intent = read_json(state_dir(job_dir) / SUBMITTING)
        if not intent:
            continue
        launch = read_json(state_dir(job_dir) / LAUNCH) or {}
        handle = launch.get("handle")
        if isinstance(handle, dict) and handle.get("token") == intent.get("token"):
            continue  # recorded: the intent is stale
        unresolved[job_dir] = intent
    if not unresolved:
        return 0
    names = sorted({NAME_PREFIX + str(i["token"]) for i in unresolved.values()})
    arrays = _arrays_by_name(names)
    found = 0
    for job_dir, intent in unresolved.items():
        array = arrays.get(NAME_PREFIX + str(intent["token"]))
        if array is None:
            continue  # never reached SLURM (or SLURM forgot it): the markers decide
        handle = _handle(array, int(intent["index"]), str(intent["token"]), intent["wrapper"])
        record = {"launcher": "slurm", "handle": handle, "recovered": True}
        write(state_dir(job_dir) / LAUNCH, json.dumps(record, sort_keys=True), 0o644)
        found += 1
    return found


def _arrays_by_name(names: list[str]) -> dict[str, str]:
    """``{job name: SLURM job id}`` from squeue, then sacct (where accounting works).

    Raises :class:`Deferred` when squeue got no answer and sacct did not find them all: a
    submission SLURM may know must not be taken for one that never reached it.
    """
    found: dict[str, str] = {}
    queries = (
        ["squeue", "-h", "-t", "all", "--name", ",".join(names), "-o", "%F|%j"],
        ["sacct", "-n", "-X", "-P", "-S", "now-7days", "--name", ",".join(names),
         "-o", "JobID,JobName"],
    )
    unanswered: Deferred | None = None
    for argv in queries:
        out = _run(argv)
        if argv[0] == "squeue" and out.returncode != 0:
            unanswered = _unanswered(out)
        for line in out.stdout.splitlines():
            job_id, _, name = line.strip().partition("|")
            base = job_id.split("_", 1)[0]
            if name in names and base.isdigit() and int(base) > int(found.get(name, "0")):
                found[name] = base  # names are unique per submission; the newest wins
        if len(found) == len(names):
            return found
    if unanswered is not None:
        raise unanswered
    return found
