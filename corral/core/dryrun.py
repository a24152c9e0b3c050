"""Dry runs: what each job would be, shown and not done.

``experiment(..., dry_run=True)`` (or ``CORRAL_DRY_RUN=1``, set by ``corral dry-run
script.py``) builds every job as a real run would, submit hooks and plugins included, and
prints for each its ``job.sh``, the command that would start it and what the hooks changed
in its environment and resources. It writes no file, records no run and connects nowhere
a path can be known without (a remote ``~`` needs the host's home directory).
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from corral.core.pointer import read_pointer
from corral.core.workspace import final_state

if TYPE_CHECKING:
    from corral.core.job import Job
    from corral.core.workspace import Workspace

DRY_RUN_ENV = "CORRAL_DRY_RUN"
EXPLAIN_ENV = "CORRAL_EXPLAIN"
"""Set with ``CORRAL_DRY_RUN`` by ``corral why SCRIPT``: a dry run explains each job that
would run (:mod:`corral.ops.explain`) rather than showing it."""
SCRIPT_START = "--- job.sh ---"
SCRIPT_END = "--- end of job.sh ---"


def dry_run_from_env() -> bool:
    """Whether ``CORRAL_DRY_RUN`` asks for a dry run."""
    return os.environ.get(DRY_RUN_ENV, "").strip().lower() in {"1", "true", "yes"}


def explain_from_env() -> bool:
    """Whether ``CORRAL_EXPLAIN`` asks a dry run to explain its jobs."""
    return os.environ.get(EXPLAIN_ENV, "").strip().lower() in {"1", "true", "yes"}


@dataclass(frozen=True)
class Change:
    """One change a submit hook, a plugin or the launcher made to a job."""

    source: str
    kind: str
    """``environ`` or ``resources``."""
    name: str
    before: Any
    after: Any

    def __str__(self) -> str:
        if self.kind == "resources":
            return f"{self.name}: {self.before!r} -> {self.after!r}  [{self.source}]"
        if self.before is None:
            return f"+ {self.name}={self.after}  [{self.source}]"
        if self.after is None:
            return f"- {self.name} (was {self.before})  [{self.source}]"
        return f"~ {self.name}={self.after} (was {self.before})  [{self.source}]"


@dataclass
class Changes:
    """The changes made to a job, in order, by source."""

    items: list[Change] = field(default_factory=list)

    @contextmanager
    def watch(self, source: str, job: Job) -> Iterator[None]:
        """Record what the block changes in ``job.environ`` and ``job.resources``."""
        environ, resources = dict(job.environ), job.resources.to_json()
        yield
        self.compare(source, "environ", environ, dict(job.environ))
        self.compare(source, "resources", resources, job.resources.to_json())

    def compare(
        self, source: str, kind: str, before: dict[str, Any], after: dict[str, Any]
    ) -> None:
        """Record the differences between two snapshots."""
        for name in sorted(set(before) | set(after)):
            if before.get(name) != after.get(name):
                self.items.append(Change(source, kind, name, before.get(name), after.get(name)))


@dataclass(frozen=True)
class PlannedJob:
    """A job of a dry run: what would be written and run."""

    name: str
    type_id: str
    identifier: str
    launcher: str
    directory: str
    script: str
    command: list[str] | None
    changes: list[Change]
    dependencies: list[str]
    state: str | None
    """``done`` or ``failed`` if the workspace already holds a result (a done job would not
    run again), else None."""

    def render(self, index: int) -> str:
        """The text a dry run prints for this job."""
        command = shlex.join(self.command) if self.command else "(the launcher does not say)"
        lines = [
            f"== job {index}: {self.name} ({self.type_id}) on {self.launcher}",
            f"identity:   {self.identifier}",
            f"directory:  {self.directory}",
            f"submit:     {command}",
        ]
        if self.dependencies:
            lines.append(f"after:      {', '.join(self.dependencies)}")
        if self.state == "done":
            lines.append("state:      done already: it would not run again")
        elif self.state is not None:
            lines.append(f"state:      {self.state} before: it would run again")
        environ = [c for c in self.changes if c.kind == "environ"]
        resources = [c for c in self.changes if c.kind == "resources"]
        lines.append("environment (changes by submit hooks, plugins and the launcher):")
        lines.extend(f"  {c}" for c in environ)
        if not environ:
            lines.append("  (none)")
        if resources:
            lines.append("resources:")
            lines.extend(f"  {c}" for c in resources)
        lines += [SCRIPT_START, self.script.rstrip("\n"), SCRIPT_END]
        return "\n".join(lines)


def plan(job: Job, workspace: Workspace, changes: Changes) -> PlannedJob:
    """The dry-run view of ``job``, built without writing or connecting."""
    launcher = job.launcher
    before = dict(job.environ)
    changes.compare(f"launcher {launcher.name}", "environ", before, {
        **before, **launcher.job_environ(job)
    })
    local = workspace.job_dir(job.type_id, job.identifier)
    pointer = read_pointer(local)
    # What is known of the job where this launcher would run it: a job done in another
    # place (another launcher's directory) runs again here.
    state: str | None = None
    if pointer is not None:
        here = launcher.connector.describe().get("host")
        same = (pointer.get("remote_dir"), pointer.get("host")) == (str(job.directory), here)
        known = pointer.get("state") if same else None
        state = str(known) if known in ("done", "failed") else None
    elif str(job.directory) == str(local):
        final = final_state(local)
        state = final[0].value if final is not None else None
    return PlannedJob(
        name=job.name,
        type_id=job.type_id,
        identifier=job.identifier,
        launcher=launcher.name,
        directory=str(job.directory),
        script=launcher.script_for(job),
        command=launcher.submit_command(job),
        changes=list(changes.items),
        dependencies=[d.name for d in job.dependencies],
        state=state,
    )
