"""Removing what a workspace no longer needs: jobs (``corral jobs rm``) and the code
snapshots no job refers to (``corral gc``).

A job is removed only when it is over (done, failed, lost, or created and never started)
and no pending job depends on it; its state is asked of its host first. A snapshot is
removed only when no job's ``params.json`` (nor a remote job's local copy) names it and no
running experiment holds it (a shared lock on ``code/<hash>.lock``, see
:mod:`corral.core.snapshot`); the references are read again under the snapshot's lock.
"""

from __future__ import annotations

import os
import shutil
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from corral.core import snapshot
from corral.core.job import JobState
from corral.core.workspace import STATE_DIR, Workspace, read_json
from corral.errors import ConfigError
from corral.ops import control
from corral.ops.inventory import JobInfo, job_dirs, list_jobs
from corral.plugins.manager import PluginManager

STALE_TEMP = 3600.0
"""Seconds after which an unfinished snapshot write (``code/.tmp-*``) is debris."""


# --- jobs ------------------------------------------------------------------------------------


def _relpath(job: JobInfo) -> str:
    return f"jobs/{job.type_id}/{job.identifier}"


def _depends_on(job: JobInfo) -> list[str]:
    data = read_json(job.params_path)
    deps = data.get("depends_on") if isinstance(data, dict) else None
    return [d for d in deps if isinstance(d, str)] if isinstance(deps, list) else []


def pending_dependents(
    workspace: Workspace, jobs: Sequence[JobInfo], plugins: PluginManager
) -> dict[str, list[JobInfo]]:
    """For each of ``jobs`` (by identifier), the jobs not over yet that depend on it (their
    state asked of their hosts)."""
    targets = {_relpath(j): j for j in jobs}
    mine = {j.identifier for j in jobs}
    found: list[tuple[JobInfo, list[str]]] = []
    for info in list_jobs(workspace):
        if info.state.ended or info.identifier in mine:
            continue
        hits = [rel for rel in _depends_on(info) if rel in targets]
        if hits:
            found.append((info, hits))
    result: dict[str, list[JobInfo]] = defaultdict(list)
    fresh = control.refresh(workspace, [info for info, _ in found], plugins)
    for (_, hits), now in zip(found, fresh, strict=True):
        if not now.state.ended:
            for rel in hits:
                result[targets[rel].identifier].append(now)
    return dict(result)


def remove_jobs(
    workspace: Workspace, jobs: Sequence[JobInfo], plugins: PluginManager
) -> dict[str, str]:
    """Remove ``jobs`` (local and remote directories), all or none: a ConfigError names
    the jobs that still run or that a pending job depends on. ``{identifier: what
    happened}``."""
    fresh = control.refresh(workspace, jobs, plugins)
    refused = []
    for job in fresh:
        if not job.state.removable:
            refused.append(
                f"{job.name} is {job.reason}" + (
                    f" (stop it first: corral jobs kill {job.short})"
                    if job.state.in_flight else ""
                )
            )
    for ident, dependents in pending_dependents(workspace, fresh, plugins).items():
        job = next(j for j in fresh if j.identifier == ident)
        others = ", ".join(f"{d.name} ({d.state})" for d in dependents[:3])
        refused.append(f"{job.name} is needed by {others}")
    if refused:
        more = f" (and {len(refused) - 3} more)" if len(refused) > 3 else ""
        raise ConfigError("cannot remove: " + "; ".join(refused[:3]) + more)
    return control.remove(fresh, plugins, markers=frozenset({JobState.DONE, JobState.FAILED}))


# --- snapshots -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Garbage:
    """A snapshot no job refers to."""

    hash: str
    path: Path
    files: int
    size: int
    """Bytes."""
    mtime: float


def referenced(workspace: Workspace) -> set[str]:
    """The snapshots named by the ``params.json`` of a job (or a remote job's local copy)."""
    found = set()
    for _, _, local in job_dirs(workspace):
        for path in (local / "params.json", local / STATE_DIR / "params.json"):
            data = read_json(path)
            snap = data.get("snapshot") if isinstance(data, dict) else None
            if isinstance(snap, dict) and isinstance(snap.get("hash"), str):
                found.add(snap["hash"])
    return found


def _measure(directory: Path) -> tuple[int, int]:
    files = size = 0
    for dirpath, _, names in os.walk(directory):
        for name in names:
            files += 1
            size += os.lstat(os.path.join(dirpath, name)).st_size
    return files, size


def _in_use(code: Path, name: str) -> bool:
    fd = snapshot.try_exclusive(code, name)
    if fd is None:
        return True
    os.close(fd)
    return False


def find_garbage(workspace: Workspace) -> list[Garbage]:
    """The snapshots of ``workspace`` that no job refers to and no experiment holds."""
    code = workspace.root / snapshot.CODE
    try:
        entries = sorted(e for e in code.iterdir() if e.is_dir() and snapshot.is_hash(e.name))
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise ConfigError(f"cannot read {code}: {exc.strerror or exc}") from exc
    used = referenced(workspace)
    garbage = []
    for entry in entries:
        if entry.name not in used and not _in_use(code, entry.name):
            files, size = _measure(entry)
            garbage.append(Garbage(entry.name, entry, files, size, entry.stat().st_mtime))
    return garbage


def collect_garbage(workspace: Workspace, hashes: Iterable[str]) -> list[str]:
    """Remove the snapshots ``hashes`` that are still unreferenced and unheld (checked under
    their locks), and debris of interrupted writes; the hashes removed."""
    code = workspace.root / snapshot.CODE
    locks = {}
    for name in hashes:
        if (code / name).is_dir() and (fd := snapshot.try_exclusive(code, name)) is not None:
            locks[name] = fd
    removed = []
    try:
        used = referenced(workspace)
        for name in locks:
            if name not in used:
                shutil.rmtree(code / name)
                (code / f"{name}.lock").unlink(missing_ok=True)
                removed.append(name)
    finally:
        for fd in locks.values():
            os.close(fd)
    _remove_debris(code)
    return removed


def _remove_debris(code: Path) -> None:
    """Temporary directories of writes that never finished, and lock files of snapshots that
    are gone (when nobody holds them)."""
    try:
        entries = list(code.iterdir())
    except OSError:
        return
    for entry in entries:
        if entry.name.startswith(".tmp-") and time.time() - entry.stat().st_mtime > STALE_TEMP:
            shutil.rmtree(entry, ignore_errors=True)
        elif entry.suffix == ".lock" and not (code / entry.stem).exists():
            fd = snapshot.try_exclusive(code, entry.stem)
            if fd is not None:
                entry.unlink(missing_ok=True)
                os.close(fd)
