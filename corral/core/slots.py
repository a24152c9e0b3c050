"""Slot leases held by running jobs: lock files on the host, not counters in one client.

A job that needs ``k`` of ``n`` slots holds ``k`` of the files ``<dir>/<i>.lock`` locked
(``flock``) while it runs, so two clients, or a client that left, never oversubscribe a host;
a GPU job's leased indices become its ``CUDA_VISIBLE_DEVICES``. The kernel releases the
locks when the process ends, however it ends.
"""

from __future__ import annotations

import fcntl
import os
import random
import time
from pathlib import Path


class Lease:
    """Slots held by this process."""

    def __init__(self, indices: list[int], fds: list[int]) -> None:
        self.indices = indices
        self._fds = fds

    def release(self) -> None:
        """Give the slots back."""
        for fd in self._fds:
            os.close(fd)
        self._fds = []


def _try(directory: Path, total: int, need: int) -> Lease | None:
    indices: list[int] = []
    fds: list[int] = []
    for i in random.sample(range(total), total):  # spread contention over the files
        fd = os.open(directory / f"{i}.lock", os.O_CREAT | os.O_RDWR, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        indices.append(i)
        fds.append(fd)
        if len(indices) == need:
            return Lease(sorted(indices), fds)
    for fd in fds:  # all or nothing: never sit on part of a request
        os.close(fd)
    return None


def acquire(directory: Path, total: int, need: int, *, max_pause: float = 1.0) -> Lease:
    """Block until ``need`` of the ``total`` slots in ``directory`` are ours."""
    if need <= 0:
        return Lease([], [])
    if need > total:
        raise ValueError(f"{need} slots asked, only {total} exist in {directory}")
    directory.mkdir(parents=True, exist_ok=True)
    pause = 0.02
    while True:
        lease = _try(directory, total, need)
        if lease is not None:
            return lease
        time.sleep(pause * random.uniform(0.5, 1.5))
        pause = min(pause * 1.5, max_pause)


def parse(spec: str) -> tuple[Path, int, int]:
    """``"<dir>:<total>:<need>"`` (as put in a job's environment) → its parts."""
    directory, total, need = spec.rsplit(":", 2)
    return Path(directory), int(total), int(need)
