"""The task of the P2 benchmark, in a module of its own so the job imports only corral."""

from __future__ import annotations

from corral import Param, Task


class Noop(Task):
    """Does nothing: what is measured is the cost of running a task at all."""

    i: Param[int]

    def execute(self) -> None:
        pass


class Sleep(Task):
    """Sleeps ``seconds``: P8's tasks of 1 s, whose ideal wall time is known."""

    i: Param[int]
    seconds: Param[float] = 1.0

    def execute(self) -> None:
        import time

        time.sleep(self.seconds)
