"""How many more jobs a client may queue on a SLURM cluster (pure bookkeeping).

Clusters cap the jobs a user may have queued (``MaxSubmitJobs`` of an association or QOS,
``MaxJobCount`` of the controller). Rather than fail when ``sbatch`` is refused for that,
the SLURM launcher keeps its queued jobs under the limit it read, learns a lower one from a
refusal (the user's other jobs count too), pauses with backoff, and submits more as its jobs
finish.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable

MIN_PAUSE = 5.0
MAX_PAUSE = 120.0


class SubmitBudget:
    """The room left under a cluster's submission limits for one launcher's jobs."""

    def __init__(
        self, limit: int | None = None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        """The limit read from the cluster (None: none known)."""
        self.learned: int | None = None
        """A lower limit learned when the cluster refused a submission."""
        self.active: set[Hashable] = set()
        self._clock = clock
        self._pause = MIN_PAUSE
        self._paused_until = 0.0

    def room(self) -> int | None:
        """How many more jobs may be queued now; None for no limit."""
        if self._clock() < self._paused_until:
            return 0
        limits = [x for x in (self.limit, self.learned) if x is not None]
        if not limits:
            return None
        return max(0, min(limits) - len(self.active))

    def queued(self, job: Hashable) -> None:
        """``job`` is queued or running on the cluster."""
        self.active.add(job)

    def finished(self, job: Hashable) -> None:
        """``job`` left the queue."""
        self.active.discard(job)

    def accepted(self) -> None:
        """A submission went through: the pause after the next refusal starts short again."""
        self._pause = MIN_PAUSE

    def refused(self, attempted: int) -> None:
        """The cluster refused to queue ``attempted`` more jobs for its limits: hold back,
        and learn a limit (what is queued now, or half the attempt when nothing is)."""
        if self.active:
            self.learned = len(self.active)
        else:
            self.learned = max(1, min(attempted, self.learned or attempted) // 2)
        self._hold_back()

    def unanswered(self) -> None:
        """SLURM did not answer (a controller timing out or restarting): hold back, with
        the same backoff, but learn no limit from it."""
        self._hold_back()

    def _hold_back(self) -> None:
        self._paused_until = self._clock() + self._pause
        self._pause = min(self._pause * 2, MAX_PAUSE)

    @property
    def paused_for(self) -> float:
        """Seconds until submissions may be tried again (0 when they may now)."""
        return max(0.0, self._paused_until - self._clock())
