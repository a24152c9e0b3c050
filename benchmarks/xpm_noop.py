"""The experimaestro task of the P3 benchmark, importable by its jobs."""

from __future__ import annotations

from experimaestro import Param, Task


class XpmNoop(Task):
    """Does nothing: what is measured is the cost of running a task at all."""

    i: Param[int]

    def execute(self) -> None:
        pass
