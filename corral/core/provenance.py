"""What a job records of where it comes from (``.corral/provenance.json``), and the code
snapshots an experiment takes (:class:`Recorder`).

Provenance: corral's and Python's versions, the git commit and dirty flag of each import
root of the task's classes, the snapshot hash, the launcher and where it runs, the client
host, the experiment and run, the submit time and the resources after submit hooks. It is
written with the job's other files, so it travels with them to a remote host.
"""

from __future__ import annotations

import contextlib
import functools
import os
import platform
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from corral._version import __version__
from corral.core import snapshot
from corral.core.procs import hostname
from corral.core.snapshot import Files, Snapshot
from corral.errors import ConfigError

if TYPE_CHECKING:
    from corral.core.job import Job
    from corral.core.task import Task
    from corral.core.workspace import Workspace

PROVENANCE = ".corral/provenance.json"
"""A job's provenance, relative to its directory."""

SnapshotOption = bool | list[Path]


def check_option(value: Any) -> SnapshotOption:
    """``experiment(snapshot=...)``: True, False, or a list of paths (made absolute)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str | os.PathLike) or not isinstance(value, list | tuple):
        raise ConfigError(
            f"snapshot: expected True, False or a list of paths, got {type(value).__name__}"
        )
    paths = []
    for item in value:
        if not isinstance(item, str | os.PathLike):
            raise ConfigError(f"snapshot: expected paths (str or Path), got {item!r}")
        path = Path(item).expanduser().resolve()
        if not path.exists():
            raise ConfigError(f"snapshot path {item} does not exist")
        paths.append(path)
    if not paths:
        raise ConfigError("snapshot: an empty list of paths; give snapshot=False to take none")
    return paths


def _git(root: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "--no-optional-locks", "-C", str(root), *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def git_state(root: Path) -> dict[str, Any]:
    """``{"path", "commit", "dirty"}`` of an import root (commit and dirty None outside git)."""
    commit = _git(root, "rev-parse", "--verify", "--quiet", "HEAD")
    status = _git(root, "status", "--porcelain", "--", ".") if commit is not None else None
    return {
        "path": str(root),
        "commit": commit.strip() if commit else None,
        "dirty": bool(status.strip()) if status is not None else None,
    }


class Recorder:
    """The code an experiment submits: one snapshot per set of import roots (each root read
    once), the git state of each root, and the locks keeping its snapshots from ``corral gc``
    until it ends."""

    def __init__(self, workspace: Workspace, option: SnapshotOption) -> None:
        self.workspace = workspace
        self.option = option
        self.code = workspace.root / snapshot.CODE
        # corral's own package is never part of a project's snapshot
        self._excludes = [workspace.root.resolve(), Path(__file__).resolve().parents[1]]
        self._files: dict[Path, Files] = {}
        self._git: dict[Path, dict[str, Any]] = {}
        self._snapshots: dict[tuple[Path, ...], Snapshot] = {}
        self._records: dict[tuple[str, ...], tuple[Snapshot | None, list[dict[str, Any]]]] = {}
        self._locks: list[int] = []

    def record(self, task: Task) -> tuple[Snapshot | None, list[dict[str, Any]]]:
        """The snapshot of ``task``'s code (None with ``snapshot=False``) and the git state of
        its roots; worked out once per set of import roots (10,000 tasks share a few)."""
        from corral.core.serialize import import_roots

        key = tuple(import_roots(task))
        found = self._records.get(key)
        if found is None:
            found = self._records[key] = self._record([Path(r) for r in key])
        return found

    def _record(self, roots: list[Path]) -> tuple[Snapshot | None, list[dict[str, Any]]]:
        snap = None
        if self.option is True:  # a root that is not a directory (a zip) stays live
            snap = self._snapshot(tuple(sorted(r for r in roots if r.is_dir())), explicit=False)
        elif self.option:
            snap = self._snapshot(tuple(self.option), explicit=True)
        wanted = list(dict.fromkeys([*roots, *(Path(p) for p, _ in snap.roots)] if snap else roots))
        for root in wanted:
            if root not in self._git:
                self._git[root] = git_state(root)
        return snap, [self._git[r] for r in wanted]

    def _snapshot(self, key: tuple[Path, ...], *, explicit: bool) -> Snapshot:
        found = self._snapshots.get(key)
        if found is not None:
            return found
        if explicit:
            by_root = snapshot.collect_paths(key, self._excludes)
        else:
            by_root = {}
            for root in key:
                if root not in self._files:
                    self._files[root] = snapshot.collect(root, self._excludes)
                by_root[root] = self._files[root]
        tree, mapping = snapshot.assemble(by_root)
        name = snapshot.digest(tree)
        try:
            self.code.mkdir(parents=True, exist_ok=True)
            self._locks.append(snapshot.hold(self.code, name))
            directory = snapshot.store(self.code, name, tree)
        except OSError as exc:
            raise ConfigError(
                f"workspace {self.workspace.root}: cannot write the code snapshot "
                f"{self.code / name}: {exc.strerror or exc}"
            ) from exc
        found = self._snapshots[key] = Snapshot(name, tuple(mapping), directory)
        return found

    def close(self) -> None:
        """Release the snapshots' locks (every job of the experiment has its files by now)."""
        for fd in self._locks:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._locks.clear()


@functools.cache
def _client() -> dict[str, str]:
    """What every provenance of this process shares."""
    return {
        "corral": __version__,
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "client": hostname(),
    }


def base(
    *, experiment: str, run: str, roots: Sequence[dict[str, Any]], snap: Snapshot | None,
    submitted: float,
) -> dict[str, Any]:
    """The part of a job's provenance known when it is submitted."""
    return {
        **_client(),
        "experiment": experiment,
        "run": run,
        "roots": list(roots),
        "snapshot": snap.hash if snap is not None else None,
        "submitted": submitted,
    }


def for_job(job: Job, workspace: Workspace) -> dict[str, Any]:
    """The whole provenance of ``job``: its submission's, with the launcher, where it runs
    and its resources as submit hooks left them."""
    launcher = job.launcher
    return {
        **(job.provenance or {}),
        "launcher": launcher.name,
        "location": launcher.location(workspace),
        "job_python": launcher.python,
        "resources": job.resources.to_json(),
    }
