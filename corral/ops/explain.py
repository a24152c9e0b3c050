"""Why would a config run (again)? ``explain(config, against=workspace)``.

A config whose identity matches no job of the workspace is compared with the closest job of
its task type there (the fewest differing values in ``params.json``): each differing
parameter path is listed, ``model.hidden: 128 → 256``, with what enters the identity and what
does not — a param left at a default that changed (the identity leaves defaults out, so it
did not change), a param added since, a value that became or stopped being the default.

::

    print(explain(Learn(model=Model(hidden=256)), against="./workspace"))
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from corral.core.config import Config
from corral.core.identity import identifier, type_id
from corral.core.paramdiff import Comparison, Difference, Tree
from corral.core.serialize import params_tree
from corral.core.workspace import Workspace
from corral.errors import ConfigError
from corral.ops.inventory import JobInfo, job_dirs, read_job


@dataclass(frozen=True)
class Explanation:
    """How a config relates to the jobs of a workspace (``str()`` gives the report)."""

    name: str
    """``Task/identity-prefix``."""
    identifier: str
    type_id: str
    workspace: Path
    match: JobInfo | None
    """The job with this identity, if there is one."""
    closest: JobInfo | None
    """Else the job of the same task type with the fewest differing values."""
    candidates: int
    """Jobs of the same task type in the workspace."""
    differences: list[Difference] = field(default_factory=list)
    """Against :attr:`match` (values the identity leaves out) or :attr:`closest`."""
    unexplained: list[str] = field(default_factory=list)
    """Configs of the compared job whose identity today's classes cannot give back."""
    elsewhere: str | None = None
    """Where this submission goes, when it is not where the matching job is done (a job
    done on one launcher runs again when submitted to another)."""

    @property
    def would_run(self) -> bool:
        """Whether submitting the config would run a job (none done has its identity)."""
        return self.match is None or self.match.state != "done" or self.elsewhere is not None

    def render(self) -> str:
        """The report: one headline, then one line per difference."""
        task = self.type_id.rsplit(".", 1)[-1]
        if self.match is not None and self.match.state == "done" and self.elsewhere:
            m = self.match
            where = f"{m.launcher or 'local'}" + (f" on {m.label or m.host}" if m.host else "")
            lines = [f"{self.name}: matches job {m.name}, done on {where}; this run submits it "
                     f"to {self.elsewhere}, where it is not done: it would run again there"]
            if self.differences:
                lines.append("  values that differ but are not in the identity:")
        elif self.match is not None:
            what = "it would not run again" if self.match.state == "done" else (
                "it would run again" if self.match.final else "it is that job"
            )
            lines = [f"{self.name}: matches job {self.match.name} ({self.match.reason}): {what}"]
            if self.differences:
                lines.append("  values that differ but are not in the identity:")
        elif self.closest is None:
            lines = [f"{self.name}: new: no {task} job in {self.workspace} to compare with"]
        else:
            lines = [
                f"{self.name}: no job in {self.workspace} has this identity; closest of "
                f"{self.candidates} {task} job(s): {self.closest.name} ({self.closest.reason})"
            ]
            if not any(d.identity for d in self.differences) and not self.unexplained:
                lines.append("  no param in the identity differs: did the task's id change?")
        lines += [f"  {d}" for d in self.differences]
        for path in self.unexplained:
            lines.append(
                f"  note: the identity of {path} in the job cannot be recomputed with today's "
                "classes (a param changed kind or a class changed id?)"
            )
        return "\n".join(lines)

    __str__ = render


def _load(job: JobInfo) -> dict[str, Any] | None:
    try:
        data = json.loads(job.params_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and "objects" in data else None


def _compare(data: dict[str, Any] | None, new: Tree, *, analyze: bool) -> Comparison | None:
    """The comparison with a job's ``params.json``; None when it is not one we can read."""
    if data is None:
        return None
    try:
        return Comparison(Tree.of(data), new, analyze=analyze)
    except (KeyError, IndexError, TypeError, ValueError):
        return None


def explain(
    config: Config, against: str | os.PathLike[str] | Workspace, *, going_to: str | None = None
) -> Explanation:
    """Compare ``config`` with the jobs of the workspace ``against`` (see the module).

    ``going_to``: where a submission that would run it goes, said when the job with its
    identity is done elsewhere."""
    if not isinstance(config, Config):
        raise ConfigError(f"explain() takes a Config, got {type(config).__name__}")
    workspace = against if isinstance(against, Workspace) else Workspace(against)
    if not workspace.root.is_dir():
        raise ConfigError(f"explain: no workspace at {workspace.root}")
    ident, tid = identifier(config), type_id(config)
    objects, root, configs = params_tree(config)
    new = Tree(objects, root, {i: type(c) for i, c in enumerate(configs)})
    name = f"{tid.rsplit('.', 1)[-1]}/{ident[:12]}"
    jobs = [read_job(workspace, t, i) for t, i, _ in job_dirs(workspace) if t == tid]
    match = next((j for j in jobs if j.identifier == ident), None)
    if match is not None:
        found = _compare(_load(match), new, analyze=True)
        return Explanation(
            name, ident, tid, workspace.root, match, None, len(jobs),
            found.differences if found else [], found.unexplained if found else [],
            elsewhere=going_to,
        )
    ranked: list[tuple[int, float, JobInfo, dict[str, Any]]] = []
    for job in jobs:
        data = _load(job)
        quick = _compare(data, new, analyze=False)
        if data is not None and quick is not None:
            ranked.append((quick.distance, -(job.time or 0.0), job, data))
    if not ranked:
        return Explanation(name, ident, tid, workspace.root, None, None, len(jobs))
    _, _, closest, data = min(ranked, key=lambda r: (r[0], r[1]))
    found = _compare(data, new, analyze=True)
    assert found is not None  # it compared above
    return Explanation(
        name, ident, tid, workspace.root, None, closest, len(jobs),
        found.differences, found.unexplained,
    )
