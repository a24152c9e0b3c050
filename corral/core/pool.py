"""``LauncherPool``: spread jobs over several launchers (e.g. SSH boxes) by free slots.

The pool chooses a member for each job once, when it is submitted, after its submit hooks
set its resources (:meth:`LauncherPool.choose`): the host of its dependencies (their outputs
are there), else the member with room for it and the most free slots counting the jobs it
already holds — free GPUs first for a job that needs GPUs, then the share of free CPUs — so
the job's directory, and hence ``task.__taskdir__``, is known at once, and from then on the
job is an ordinary job of that member.

The submit hooks, which run before the choice, see the pool's :meth:`representative` as the
job's launcher: the member its dependencies fix, else the first member.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from corral.core.capacity import Offer, shortfalls
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

    def representative(self, dependencies: Sequence[Job], workspace: Workspace) -> Launcher:
        """The member submit hooks see: where the dependencies are, else the first."""
        return self._where(dependencies, workspace) or self.members[0]

    def choose(self, job: Job, workspace: Workspace) -> Launcher:
        """The member that runs ``job`` (its resources final), counted against it until the
        job is final."""
        member = self._where(job.dependencies, workspace)
        if member is None:
            cpus, gpus = job.resources.cpus, job.resources.gpus
            able = [m for m in self.members if self._fits_ever(m, cpus, gpus)] or self.members
            member = self.best(cpus, gpus, able)
        self._held[id(member)].append(job)
        return member

    def _where(self, dependencies: Sequence[Job], workspace: Workspace) -> Launcher | None:
        for dep in dependencies:
            for member in self.members:
                if member.location(workspace) == dep.launcher.location(workspace):
                    return member
        return None

    def free(self, member: Launcher) -> tuple[int, int]:
        """``(cpus, gpus)`` of ``member`` not held by the pool's unfinished jobs."""
        held = self._held[id(member)]
        held[:] = [j for j in held if not j.state.final]
        cpus, gpus = _slots(member)
        return (
            cpus - sum(j.resources.cpus for j in held),
            gpus - sum(j.resources.gpus for j in held),
        )

    def best(self, cpus: int, gpus: int, members: Sequence[Launcher]) -> Launcher:
        """Of ``members``, the one with room now for ``cpus`` and ``gpus``, the most free GPUs
        (for a GPU job), then the largest share of free CPUs; the first on a tie."""

        def key(member: Launcher) -> tuple[bool, int, float]:
            free_cpus, free_gpus = self.free(member)
            total_cpus = max(_slots(member)[0], 1)
            fits = free_cpus >= cpus and free_gpus >= gpus
            return fits, free_gpus if gpus else 0, free_cpus / total_cpus

        return max(members, key=key)

    @staticmethod
    def _fits_ever(member: Launcher, cpus: int, gpus: int) -> bool:
        total_cpus, total_gpus = _slots(member)
        return cpus <= total_cpus and gpus <= total_gpus

    def __repr__(self) -> str:
        return f"LauncherPool({self.members!r})"


def _slots(member: Launcher) -> tuple[int, int]:
    """A member's CPU and GPU slots (1 and 0 for a launcher that does not count slots)."""
    slots = getattr(member, "slots", None)
    return int(getattr(slots, "cpus", 1)), int(getattr(slots, "gpus", 0))


class FirstFit(LauncherPool):
    """Launchers tried in order: each job goes to the first whose capacities fit its
    resources (after its submit hooks), e.g. a cluster's ``gpu`` and ``cpu`` partitions and
    a GPU box, chosen by what each job asks.

    :param launchers: the members, in the order they are tried.
    :param offers: what each member offers a job, where declared (a hosts file's capacity
        table, see :mod:`corral.core.capacity`); what a declaration leaves out is asked of
        the member itself (:meth:`~corral.core.launcher.Launcher.capacities`, once).
    :param names: a name for each member, in messages.
    """

    def __init__(
        self,
        launchers: Sequence[Launcher],
        *,
        offers: Sequence[Offer | None] | None = None,
        names: Sequence[str] | None = None,
    ) -> None:
        super().__init__(launchers)
        given = list(offers) if offers is not None else [None] * len(self.members)
        if len(given) != len(self.members):
            raise ConfigError("FirstFit: give one offer (or None) per launcher")
        self._declared = given
        self._live: dict[int, Offer] = {}
        self.names = list(names) if names is not None else [repr(m) for m in self.members]

    def offer(self, index: int) -> dict[str, float | frozenset[str]]:
        """What member ``index`` offers: its declaration, completed by the member itself."""
        member = self.members[index]
        if id(member) not in self._live:
            self._live[id(member)] = member.capacities()
        return {**self._live[id(member)], **(self._declared[index] or {})}

    def choose(self, job: Job, workspace: Workspace) -> Launcher:
        """The first member that fits ``job`` (where its dependencies are, when they have one);
        a ConfigError says why each member does not."""
        member = self._where(job.dependencies, workspace)
        if member is None:
            why = []
            for i, candidate in enumerate(self.members):
                reasons = shortfalls(self.offer(i), job.resources)
                if not reasons:
                    member = candidate
                    break
                why.append(f"{self.names[i]}: {', '.join(reasons)}")
            if member is None:
                raise ConfigError(f"no launcher fits {job.name}: {'; '.join(why)}")
        self._held[id(member)].append(job)
        return member
