"""``LauncherPool``: spread jobs over several launchers (e.g. SSH boxes) by free slots.

The pool picks a member for each job when it is submitted — the host of its dependencies
(their outputs are there), else the member with the most free CPU slots counting the jobs it
already holds — so the job's directory, and hence ``task.__taskdir__``, is known at once, and
from then on the job is an ordinary job of that member.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from corral.errors import ConfigError

if TYPE_CHECKING:
    from corral.core.job import Job
    from corral.core.launcher import Launcher
    from corral.core.workspace import Workspace


class LauncherPool:
    """Several launchers used as one: ``experiment(..., launcher=LauncherPool([a, b]))``."""

    def __init__(self, launchers: Sequence[Launcher]) -> None:
        from corral.core.launcher import Launcher

        members = list(launchers)
        if not members or not all(isinstance(m, Launcher) for m in members):
            raise ConfigError("LauncherPool needs a non-empty list of launchers")
        self.members = members
        self._held: dict[int, list[Job]] = {id(m): [] for m in members}

    def select(self, dependencies: Sequence[Job], workspace: Workspace) -> Launcher:
        """The member for a job with these dependencies."""
        for dep in dependencies:
            for member in self.members:
                if member.location(workspace) == dep.launcher.location(workspace):
                    return member
        return max(self.members, key=self._free)

    def assigned(self, member: Launcher, job: Job) -> None:
        """Count ``job`` against ``member`` until it is final."""
        self._held[id(member)].append(job)

    def _free(self, member: Launcher) -> float:
        held = self._held[id(member)]
        held[:] = [j for j in held if not j.state.final]
        cpus = getattr(getattr(member, "slots", None), "cpus", 1)
        return (cpus - sum(j.resources.cpus for j in held)) / cpus

    def __repr__(self) -> str:
        return f"LauncherPool({self.members!r})"
