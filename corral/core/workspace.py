"""The workspace layout and the state files of a job directory.

::

    WORKSPACE/
      jobs/<type id>/<identifier>/      one directory per job (the single source of truth)
        params.json  job.sh  stdout  stderr
        .corral/launch.json             launcher kind and handle (pid, SLURM id, ...)
        .corral/provenance.json         versions, git state, snapshot, launcher, resources
        .corral/done | .corral/failed   final markers (JSON), written atomically
        .corral/lock                    held by a client while it submits the job
        .corral/run.lock                held by the job process while it runs
      experiments/<name>/runs/<run>.jsonl   the jobs each run of an experiment submitted
      experiments/<name>/runs/<run>.client  locked by the run's client while it lives
      experiments/<name>/runs/<run>.stop    `corral xp kill` asks the client to start nothing
      experiments/<name>/runs/<run>.stopped the client's answer: nothing more will start
      cache/<type id>/<identifier>/<name>   @cache entries
      code/<sha256>/                    code snapshots (see :mod:`corral.core.snapshot`)
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from corral.connectors.base import atomic_write_text
from corral.core.job import Failure, JobState, Status

STATE_DIR = ".corral"
DONE = "done"
FAILED = "failed"
LAUNCH = "launch.json"
SUBMIT_LOCK = "lock"
SECRETS = ".corral/secrets.env"
"""A job's secret environment values (``export`` lines, mode 0600), relative to its dir."""
RUN_LOCK = "run.lock"
ATTEMPTS = ".corral/attempts.json"
"""How the earlier attempts of a job that was submitted again ended (its failed markers),
relative to its directory."""


class Workspace:
    """A workspace directory on this machine."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().absolute()

    @property
    def jobs(self) -> Path:
        """Where job directories live."""
        return self.root / "jobs"

    @property
    def experiments(self) -> Path:
        """Where experiment records live."""
        return self.root / "experiments"

    @property
    def cache(self) -> Path:
        """Where ``@cache`` entries live."""
        return self.root / "cache"

    def run_file(self, name: str, run_id: str, suffix: str = ".jsonl") -> Path:
        """A file of run ``run_id`` of experiment ``name``: its record (``.jsonl``), its
        client's lock (``.client``), a request to stop (``.stop``) and its answer
        (``.stopped``)."""
        return self.experiments / name / "runs" / f"{run_id}{suffix}"

    def job_dir(self, type_id: str, identifier: str) -> Path:
        """The directory of the job of ``type_id`` with ``identifier``."""
        return self.jobs / type_id / identifier

    def __repr__(self) -> str:
        return f"Workspace({str(self.root)!r})"


def state_dir(job_dir: Path) -> Path:
    """The ``.corral`` directory of a job directory."""
    return job_dir / STATE_DIR


Writer = Callable[[Path, str, int], None]
"""Writes a text file atomically: ``write(path, text, mode)``, its directory made if missing."""


def write_local(path: Path, text: str, mode: int) -> None:
    """The :data:`Writer` of this machine's files."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text, mode)


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to ``path`` via a temporary file and a rename (no fsync: state, not data)."""
    atomic_write_text(path, json.dumps(data, sort_keys=True))


def read_json(path: Path) -> Any:
    """The JSON content of ``path``, or None if missing or unreadable."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def marker_status(done: bool, failed: str | None) -> Status | None:
    """The final status the markers say: ``done`` exists, else the ``failed`` marker's text
    (None when it does not exist; text that is not JSON, being written, still means failed)."""
    if done:
        return JobState.DONE, None
    if failed is None:
        return None
    try:
        data = json.loads(failed)
    except ValueError:
        data = {}
    return JobState.FAILED, Failure.from_json(data if isinstance(data, dict) else {})


def final_state(job_dir: Path) -> Status | None:
    """``(DONE, None)``, ``(FAILED, failure)`` from the markers, or None if not final."""
    sd = state_dir(job_dir)
    if os.path.exists(sd / DONE):
        return JobState.DONE, None
    try:
        failed = (sd / FAILED).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return None
    except OSError:  # present but unreadable: failed anyway
        failed = ""
    return marker_status(False, failed)


def write_done(job_dir: Path, info: dict[str, Any]) -> None:
    """Mark the job done."""
    write_json_atomic(state_dir(job_dir) / DONE, info)


def write_failed(job_dir: Path, failure: Failure, *, write: Writer = write_local) -> None:
    """Write the ``failed`` marker of a job, with its reason: the one place it is written
    (``write`` puts it where the job directory is: here, or through a connector)."""
    write(state_dir(job_dir) / FAILED, json.dumps(failure.to_json(), sort_keys=True), 0o644)


def clear_final(job_dir: Path) -> None:
    """Remove final markers and the launch record before a (re-)run."""
    sd = state_dir(job_dir)
    for name in (DONE, FAILED, LAUNCH):
        (sd / name).unlink(missing_ok=True)


def keep_logs(job_dir: Path) -> None:
    """Before a re-run: keep the previous attempt's ``stdout``/``stderr`` as ``stdout.N``/
    ``stderr.N`` (N = 1, 2, ... in the order of attempts)."""
    logs = [job_dir / "stdout", job_dir / "stderr"]
    if not any(p.exists() for p in logs):
        return
    n = 1
    while any((job_dir / f"{p.name}.{n}").exists() for p in logs):
        n += 1
    for path in logs:
        if path.exists():
            path.rename(job_dir / f"{path.name}.{n}")


def file_mode(name: str) -> int:
    """The mode of a job file: scripts executable, secrets owner-only."""
    if name == SECRETS:
        return 0o600
    return 0o755 if name.endswith(".sh") else 0o644
