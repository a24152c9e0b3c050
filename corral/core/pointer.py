"""The local pointer of a job whose directory is elsewhere (an SSH host, a cluster's workdir).

The job directory on the remote side is the single source of truth. The local workspace
keeps, in ``jobs/<type id>/<identifier>/.corral/``, a ``remote.json`` saying where the job
runs (launcher, location, remote directory, how to reach it), its handle and its last known
state, with copies of ``params.json``, ``job.sh`` and ``provenance.json``: so listing jobs
needs no round trip, and a later run or the CLI knows where to look. The scheduler writes it
on every state change of such a job.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from corral.core.provenance import PROVENANCE
from corral.core.workspace import read_json, state_dir, write_json_atomic

if TYPE_CHECKING:
    from corral.core.job import Job, Status
    from corral.core.workspace import Workspace

POINTER = "remote.json"


def is_remote(job: Job, workspace: Workspace) -> bool:
    """Whether ``job``'s directory is not its directory in the local workspace."""
    return job.directory != workspace.job_dir(job.type_id, job.identifier)


def write_pointer(workspace: Workspace, job: Job, status: Status) -> None:
    """Create or update the local pointer of a remote job with its current ``status``.

    ``params.json``, ``job.sh`` and ``provenance.json`` are rendered beside it the first
    time (a job found by a later run, or failed before it ran, gets them too), and again
    when the job was started anew.
    """
    local = state_dir(workspace.job_dir(job.type_id, job.identifier))
    local.mkdir(parents=True, exist_ok=True)
    path = local / POINTER
    data: dict[str, Any] = read_json(path) or {}  # an earlier run's pointer, kept up to date
    restarted = job.handle is not None and data.get("handle") not in (None, job.handle)
    names = ("params.json", "job.sh", PROVENANCE)
    missing = [n for n in names if restarted or not (local / Path(n).name).exists()]
    if missing:
        files = job.launcher.job_files(job, workspace)
        for name in missing:
            if name in files:
                (local / Path(name).name).write_text(files[name])
    data.update(
        {
            "launcher": job.launcher.name,
            "location": job.launcher.location(workspace),
            **job.launcher.connector.describe(),
            "remote_dir": str(job.directory),
            **({"label": job.launcher.label} if job.launcher.label else {}),
            "handle": job.handle if job.handle is not None else data.get("handle"),
        }
    )
    if job.attempts:
        data["attempts"] = [a.to_json() for a in job.attempts]
    write_json_atomic(path, _with_status(data, status))
    job.record = local


def update_pointer(local_job_dir: Path, status: Status) -> dict[str, Any] | None:
    """Record a remote job's newly learned ``status`` in its pointer (the CLI learned it);
    the pointer as written, or None when the job has none."""
    path = state_dir(local_job_dir) / POINTER
    data = read_json(path)
    if not isinstance(data, dict):
        return None
    data = _with_status(data, status)
    write_json_atomic(path, data)
    return data


def _with_status(data: dict[str, Any], status: Status) -> dict[str, Any]:
    data["state"] = status[0].value
    data["time"] = time.time()
    if status[1] is not None:
        data["failure"] = status[1].to_json()
    else:
        data.pop("failure", None)
    return data


def read_pointer(local_job_dir: Any) -> dict[str, Any] | None:
    """The pointer in a local job directory, if the job runs elsewhere."""
    data = read_json(state_dir(local_job_dir) / POINTER)
    return data if isinstance(data, dict) else None
