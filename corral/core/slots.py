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
import threading
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


class SlotBudget:
    """Client-side count of a launcher's slots, so it starts no more jobs than fit.

    Correctness does not depend on it (jobs lease their slots on the host): it only keeps a
    client from starting jobs that would wait for a lease.
    """

    def __init__(self, owner: str, cpus: int, gpus: int) -> None:
        from corral.errors import ConfigError

        if not isinstance(cpus, int) or isinstance(cpus, bool) or cpus < 1:
            raise ConfigError(f"{owner}: cpus must be a positive int, got {cpus!r}")
        if not isinstance(gpus, int) or isinstance(gpus, bool) or gpus < 0:
            raise ConfigError(f"{owner}: gpus must be an int >= 0, got {gpus!r}")
        self.owner = owner
        self.cpus = cpus
        self.gpus = gpus
        self._used: dict[object, tuple[int, int]] = {}
        self._lock = threading.Lock()

    def check(self, what: str, cpus: int, gpus: int) -> None:
        """Refuse a request that can never fit."""
        if cpus > self.cpus or gpus > self.gpus:
            from corral.errors import ConfigError

            raise ConfigError(
                f"{what} asks cpus={cpus}, gpus={gpus}; "
                f"the {self.owner} has cpus={self.cpus}, gpus={self.gpus}"
            )

    def fits(self, needs: list[tuple[int, int]]) -> int:
        """How many of ``needs`` ((cpus, gpus) each, in order) fit in the free slots."""
        with self._lock:
            cpus = self.cpus - sum(c for c, _ in self._used.values())
            gpus = self.gpus - sum(g for _, g in self._used.values())
        n = 0
        for c, g in needs:
            cpus, gpus = cpus - c, gpus - g
            if cpus < 0 or gpus < 0:
                break
            n += 1
        return n

    def take(self, key: object, cpus: int, gpus: int) -> None:
        """Count ``key`` as using slots."""
        with self._lock:
            self._used[key] = (cpus, gpus)

    def release(self, key: object) -> None:
        """``key`` no longer uses slots."""
        with self._lock:
            self._used.pop(key, None)

    def environ(self, root: str, need_cpus: int, need_gpus: int) -> dict[str, str]:
        """The lease variables of a job (see :func:`acquire`): ``root`` holds the lock files."""
        env = {"CORRAL_CPU_SLOTS": f"{root}/cpu:{self.cpus}:{need_cpus}"}
        if need_gpus:
            env["CORRAL_GPU_SLOTS"] = f"{root}/gpu:{self.gpus}:{need_gpus}"
        return env
