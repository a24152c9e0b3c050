"""What SLURM reads and prints, by pure functions (golden-file tested): ``#SBATCH``
headers, the array wrapper that starts a batch of job directories, SLURM job states mapped
to corral's, and the output of ``squeue``/``sacct`` parsed.

A batch of ready jobs sharing their options goes out as one job array: a small wrapper whose
``#SBATCH --array`` indexes a list of job directories and ``exec``s the chosen directory's
``job.sh``.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from corral.core.job import Failure, FailureReason, JobState
from corral.errors import ConfigError

ControllerState = tuple[str, str]
"""A SLURM state word and its reason, as printed by squeue or sacct."""

ACTIVE = {
    "PENDING": JobState.SUBMITTED,
    "CONFIGURING": JobState.SUBMITTED,
    "REQUEUED": JobState.SUBMITTED,
    "REQUEUE_HOLD": JobState.SUBMITTED,
    "REQUEUE_FED": JobState.SUBMITTED,
    "RESV_DEL_HOLD": JobState.SUBMITTED,
    "SUSPENDED": JobState.RUNNING,
    "RUNNING": JobState.RUNNING,
    "COMPLETING": JobState.RUNNING,
    "STAGE_OUT": JobState.RUNNING,
    "SIGNALING": JobState.RUNNING,
    "RESIZING": JobState.RUNNING,
}

FAILED = {
    "FAILED": FailureReason.FAILED,
    "SPECIAL_EXIT": FailureReason.FAILED,
    "TIMEOUT": FailureReason.TIMEOUT,
    "DEADLINE": FailureReason.TIMEOUT,
    "OUT_OF_MEMORY": FailureReason.OUT_OF_MEMORY,
    "CANCELLED": FailureReason.CANCELLED,
    "REVOKED": FailureReason.CANCELLED,
    "NODE_FAIL": FailureReason.NODE_FAIL,
    "BOOT_FAIL": FailureReason.NODE_FAIL,
    "PREEMPTED": FailureReason.PREEMPTED,
}

# What the controller knows better than the job's own marker: a job killed at its time
# limit writes "killed by SIGTERM", but the reason is the limit.
CONTROLLER_WINS = {
    FailureReason.TIMEOUT,
    FailureReason.OUT_OF_MEMORY,
    FailureReason.PREEMPTED,
    FailureReason.NODE_FAIL,
    FailureReason.CANCELLED,
}


FORGOTTEN = "Invalid job id specified"
"""How squeue (exit 1) says it knows none of the ids asked: gone after ``MinJobAge``."""


def squeue_answered(returncode: int, stderr: str) -> bool:
    """Whether a ``squeue -j`` told which jobs it knows: it succeeded, or it knows none of
    them. Any other failure (the controller timed out, refused, is restarting) tells
    nothing: a job missing from its output must not be taken for gone."""
    return returncode == 0 or FORGOTTEN in stderr


def controller_status(state: str, reason: str = "") -> tuple[JobState, Failure | None] | None:
    """corral's view of a SLURM state (``CANCELLED by 0`` reads as CANCELLED); None if unknown.

    ``COMPLETED`` maps to DONE here; the caller requires the job's ``done`` marker too.
    """
    word = state.split()[0].rstrip("+") if state else ""
    if word in ACTIVE:
        return ACTIVE[word], None
    if word == "COMPLETED":
        return JobState.DONE, None
    if word in FAILED:
        why = FAILED[word]
        if word == "CANCELLED" and "Dependency" in reason:
            why = FailureReason.DEPENDENCY
        message = f"SLURM state {word}" + (f" ({reason})" if reason and reason != "None" else "")
        return JobState.FAILED, Failure(why, message)
    return None


def combine(
    controller: tuple[JobState, Failure | None] | None,
    marker: tuple[JobState, Failure | None] | None,
) -> tuple[JobState, Failure | None]:
    """The final status of a job from the controller's view and the job's own marker.

    The marker wins, except for reasons only the controller knows (time limit, memory,
    preemption, node failure, cancellation). A job the controller calls COMPLETED, or has
    forgotten, without a marker is ``lost``.
    """
    if marker is not None and marker[0] is JobState.DONE:
        return marker
    told = controller[1] if controller is not None else None
    if told is not None and (told.reason in CONTROLLER_WINS or marker is None):
        assert controller is not None
        return controller
    if marker is not None:
        killed = marker[1] is not None and marker[1].reason is FailureReason.KILLED
        if killed and controller is not None and not controller[0].final:
            return controller  # signalled by SLURM: wait for its reason (timeout, ...)
        return marker
    if controller is not None and not controller[0].final:
        return controller
    why = "the job ended without a result" if controller else "the job is gone from SLURM"
    return JobState.FAILED, Failure(FailureReason.LOST, why)


_COMPRESSED = re.compile(r"^(\d+)_\[([^\]]+)\]$")


def expand_indices(spec: str) -> list[str]:
    """Array indices from SLURM's compressed form: ``"0-3,7%2"`` → 0, 1, 2, 3, 7."""
    indices: list[str] = []
    for part in spec.split("%", 1)[0].split(","):
        first, sep, last = part.partition("-")
        if not first.isdigit() or (sep and not last.isdigit()):
            continue
        indices += [str(i) for i in range(int(first), int(last if sep else first) + 1)]
    return indices


def parse_states(text: str, wanted: Collection[str]) -> dict[str, ControllerState]:
    """``{array task id: (state, reason)}`` for the ``wanted`` ids (``"123_4"``) found in
    ``id|state|reason`` lines of ``squeue -r`` or ``sacct -X -P``.

    sacct prints the pending tasks of an array compressed (``123_[4-9%2]``), or the whole
    array as ``123`` while none started: both are expanded to the wanted tasks. A bare ``123``
    in any other state is the record of one task whose index it does not tell: ignored.
    """
    tasks: dict[str, ControllerState] = {}
    whole: dict[str, ControllerState] = {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) < 2 or not parts[0]:
            continue
        job_id, state = parts[0], (parts[1], parts[2] if len(parts) > 2 else "")
        compressed = _COMPRESSED.match(job_id)
        if compressed:
            base = compressed.group(1)
            for index in expand_indices(compressed.group(2)):
                tasks.setdefault(f"{base}_{index}", state)
        elif "_" in job_id:
            tasks[job_id] = state
        elif state[0] == "PENDING":
            whole[job_id] = state
    found: dict[str, ControllerState] = {}
    for task in wanted:
        seen = tasks.get(task) or whole.get(task.split("_", 1)[0])
        if seen is not None:
            found[task] = seen
    return found


def header(lines: Sequence[str]) -> list[str]:
    """``#SBATCH`` lines. sbatch reads them itself (no shell), so a value with white space or
    a quote, which it would split or keep verbatim, is refused."""
    for line in lines:
        if re.search(r"[\s'\"\\]", line):
            raise ConfigError(f"SLURM option {line!r}: white space and quotes are not allowed")
    return [f"#SBATCH {line}" for line in lines]


def array_wrapper(
    directories: Sequence[str],
    options: Sequence[str],
    *,
    name: str,
    comment: str,
    output: str,
    dependency: Sequence[str] = (),
    throttle: int | None = None,
) -> str:
    """The script of one job array: task ``i`` runs ``directories[i]/job.sh``."""
    if not directories:
        raise ConfigError("an array needs at least one job")
    array = f"0-{len(directories) - 1}" + (f"%{throttle}" if throttle else "")
    lines = [
        f"--job-name={name}",
        f"--comment={comment}",
        f"--array={array}",
        f"--output={output}",
        f"--error={output}",
        *options,
    ]
    if dependency:
        lines += [f"--dependency=afterok:{':'.join(dependency)}", "--kill-on-invalid-dep=yes"]
    body = ["#!/usr/bin/env bash", *header(lines), "dirs=("]
    body += [f"  {shlex.quote(d)}" for d in directories]
    body += [")", 'exec bash "${dirs[$SLURM_ARRAY_TASK_ID]}/job.sh"']
    return "\n".join(body) + "\n"


SINFO_FORMAT = "%P|%a|%l|%D|%c|%m|%G"
"""``sinfo -h -o`` of :func:`parse_partitions`: partition, availability, time limit, nodes,
CPUs per node, memory per node (MB), generic resources per node."""


@dataclass(frozen=True)
class Partition:
    """What one partition offers a job, from ``sinfo`` (one round trip for them all)."""

    name: str
    default: bool
    available: str
    """``up``, ``down``, ``drain``, ``inact``."""
    time_limit: str
    """As sinfo prints it: ``infinite``, ``5:00``, ``1-00:00:00``."""
    nodes: int
    cpus: int
    """CPUs of its largest node."""
    mem_mb: int
    """Memory of its largest node, in megabytes."""
    gpus: dict[str, int]
    """GPUs per node by type (``{"a100": 2}``; ``""`` for GPUs of no type): the most a
    node of the partition has."""

    @property
    def max_gpus(self) -> int:
        """The most GPUs one node of the partition has."""
        return max(self.gpus.values(), default=0)

    def describe(self) -> str:
        """``gpu (up, max infinite, 2 nodes, 4 CPUs, gpu:a100:2 gpu:t4:2)``."""
        gres = " ".join(f"gpu:{t}:{n}" if t else f"gpu:{n}" for t, n in sorted(self.gpus.items()))
        parts = [self.available, f"max {self.time_limit}", f"{self.nodes} node(s)",
                 f"{self.cpus} CPUs", *([gres] if gres else [])]
        return f"{self.name}{'*' if self.default else ''} ({', '.join(parts)})"


_GRES_GPU = re.compile(r"^gpu(?::([^:()]+))?:(\d+)")


def parse_partitions(text: str) -> dict[str, Partition]:
    """Partitions from ``sinfo -h -o SINFO_FORMAT`` (a partition may span several lines, one
    per kind of node)."""
    found: dict[str, Partition] = {}
    for line in text.splitlines():
        fields = line.strip().split("|")
        if len(fields) < 7:
            continue
        raw, available, limit, nodes, cpus, mem, gres = fields[:7]
        name = raw.rstrip("*")
        gpus: dict[str, int] = {}
        for item in gres.split(","):
            match = _GRES_GPU.match(item.strip())
            if match:
                kind = match.group(1) or ""
                gpus[kind] = max(gpus.get(kind, 0), int(match.group(2)))
        this = Partition(
            name, raw.endswith("*"), available, limit, _int(nodes), _int(cpus), _int(mem), gpus
        )
        before = found.get(name)
        if before is not None:
            merged = dict(before.gpus)
            for kind, count in gpus.items():
                merged[kind] = max(merged.get(kind, 0), count)
            this = Partition(
                name, before.default or this.default, before.available, before.time_limit,
                before.nodes + this.nodes, max(before.cpus, this.cpus),
                max(before.mem_mb, this.mem_mb), merged,
            )
        found[name] = this
    return found


def _int(text: str) -> int:
    digits = text.strip().rstrip("+")
    return int(digits) if digits.isdigit() else 0


REFUSED_OPTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("invalid partition", ("--partition",)),
    ("invalid account", ("--account", "--partition")),
    ("invalid qos", ("--qos",)),
    ("time limit", ("--time",)),
    ("generic resource", ("--gres", "--gpus", "--gpus-per-node", "--gpus-per-task")),
    ("memory", ("--mem", "--mem-per-cpu", "--mem-per-gpu")),
    ("node configuration", ("--gres", "--gpus", "--constraint", "--mem", "--cpus-per-task")),
    ("invalid feature", ("--constraint",)),
    ("node count", ("--nodes",)),
)
"""SLURM's refusal messages (a lowercase part of them) and the options they refuse."""


def explain_refusal(stderr: str, options: Sequence[str], partitions: Sequence[str] = ()) -> str:
    """What sbatch refused, in one line: its message, the options of ours it is about, and,
    for a partition, the valid ones (``partitions``, from ``sinfo``) with the closest."""
    from corral.errors import did_you_mean

    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    message = lines[-1].strip() if lines else "no message"
    message = re.sub(r"^sbatch: error: (Batch job submission failed: )?", "", message)
    lowered = message.lower()
    named: list[str] = []
    for words, names in REFUSED_OPTIONS:
        if words in lowered:
            named = [o for o in options if o.split("=", 1)[0] in names]
            break
    text = f"sbatch refused {', '.join(named)}: {message}" if named else f"sbatch: {message}"
    if partitions and "partition" in lowered:
        given = next((o.split("=", 1)[1] for o in named if o.startswith("--partition=")), "")
        text += f"; partitions: {', '.join(partitions)}"
        text += did_you_mean(given, partitions) if given else ""
    return text


def parse_partition_names(text: str) -> list[str]:
    """Partition names from ``sinfo -h -o %R``, each once, in order."""
    return list(dict.fromkeys(line.strip() for line in text.splitlines() if line.strip()))
