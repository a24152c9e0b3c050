"""Slot leases held by running jobs: lock files on the host, not counters in one client.

A job that needs ``k`` of ``n`` slots holds ``k`` of the files ``<dir>/<i>.lock`` locked
(``flock``) while it runs, so two clients, or a client that left, never oversubscribe a host;
a GPU job's leased indices become its ``CUDA_VISIBLE_DEVICES``. The kernel releases the
locks when the process ends, however it ends.

The lock files are the machine's, not a workspace's or a client's: by default they live in
``/tmp/corral-slots/{cpu,gpu}`` on the host where the job runs (``$CORRAL_SLOTS_DIR`` there,
or a launcher's ``slots_dir``, instead), so every client and every Unix user of the machine
leases from the same files. Directories are created sticky and world-writable (like
``/tmp``) and lock files readable by all, since ``flock`` needs only a read-only descriptor.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from corral.core.job import Resources

DEFAULT_DIR = "/tmp/corral-slots"
"""The machine-wide slot directory (not under ``$XDG_RUNTIME_DIR``: that one is per user)."""

ENV = "CORRAL_SLOTS_DIR"
"""Overrides :data:`DEFAULT_DIR` on the host where a job runs."""


def host_dir() -> Path:
    """This machine's slot directory: ``$CORRAL_SLOTS_DIR``, else :data:`DEFAULT_DIR`."""
    return Path(os.environ.get(ENV) or DEFAULT_DIR)


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


def make_shared_dir(directory: Path) -> None:
    """Create ``directory`` and its missing parents with mode 1777, as ``/tmp`` is."""
    missing: list[Path] = []
    path = directory
    while not path.is_dir():
        missing.append(path)
        if path.parent == path:
            break
        path = path.parent
    for path in reversed(missing):
        try:
            path.mkdir()
        except FileExistsError:
            continue  # made by another process (perhaps another user): its creator sets it
        except OSError as exc:
            raise OSError(f"cannot create the slot directory {path}: {exc}") from exc
        os.chmod(path, 0o1777)  # mkdir's mode is cut by the umask


def _open_lock(path: Path) -> int:
    # Open an existing file without O_CREAT: in a sticky world-writable directory,
    # fs.protected_regular refuses O_CREAT on another user's file even when it exists.
    for _ in range(3):
        try:
            return os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            pass
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue  # created meanwhile by another job
        except PermissionError as exc:
            raise PermissionError(
                f"cannot create the slot lock {path} (its directory must be writable by "
                f"every user of the machine: chmod 1777 {path.parent}): {exc}"
            ) from exc
        with contextlib.suppress(OSError):
            os.fchmod(fd, 0o666)  # O_CREAT's mode is cut by the umask
        return fd
    return os.open(path, os.O_RDONLY)


def _try(directory: Path, total: int, need: int) -> Lease | None:
    indices: list[int] = []
    fds: list[int] = []
    for i in random.sample(range(total), total):  # spread contention over the files
        fd = _open_lock(directory / f"{i}.lock")
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
    make_shared_dir(directory)
    pause = 0.02
    while True:
        lease = _try(directory, total, need)
        if lease is not None:
            return lease
        time.sleep(pause * random.uniform(0.5, 1.5))
        pause = min(pause * 1.5, max_pause)


def parse(spec: str) -> tuple[Path, int, int]:
    """``"<dir>:<total>:<need>"`` (as put in a job's environment) → its parts.

    A relative ``<dir>`` is under this machine's slot directory (:func:`host_dir`).
    """
    directory, total, need = spec.rsplit(":", 2)
    return host_dir() / directory, int(total), int(need)


class SlotBudget:
    """Client-side count of a launcher's slots, so it starts no more jobs than fit.

    Correctness does not depend on it (jobs lease their slots on the host): it only keeps a
    client from starting jobs that would wait for a lease.
    """

    def __init__(self, owner: str, cpus: int, gpus: int, *, gpu_type: str | None = None) -> None:
        from corral.core.job import check_resource
        from corral.errors import ConfigError

        if not isinstance(cpus, int) or isinstance(cpus, bool) or cpus < 1:
            raise ConfigError(f"{owner}: cpu_slots must be a positive int, got {cpus!r}")
        if not isinstance(gpus, int) or isinstance(gpus, bool) or gpus < 0:
            raise ConfigError(f"{owner}: gpu_slots must be an int >= 0, got {gpus!r}")
        try:
            check_resource("gpu_type", gpu_type)
        except ConfigError as exc:
            raise ConfigError(f"{owner}: {exc}") from None
        self.owner = owner
        self.cpus = cpus
        self.gpus = gpus
        self.gpu_type = gpu_type
        self._used: dict[object, tuple[int, int]] = {}
        self._lock = threading.Lock()

    def check(self, what: str, resources: Resources) -> None:
        """Refuse a request that can never fit: more slots than exist, or more than one
        process (a distributed job needs a batch scheduler)."""
        from corral.errors import ConfigError

        if resources.tasks > 1 or resources.torchrun:
            raise ConfigError(
                f"{what} asks nodes={resources.nodes}, tasks_per_node="
                f"{resources.tasks_per_node}: the {self.owner} runs one process per job "
                "(distributed jobs run on the SLURM launcher)"
            )
        wanted = resources.gpu_type
        if wanted is not None and resources.gpus and wanted != self.gpu_type:
            has = f"GPUs of type {self.gpu_type!r}" if self.gpu_type else "GPUs of no declared type"
            raise ConfigError(f"{what} asks gpu_type={wanted!r}; the {self.owner} has {has}")
        cpus, gpus = resources.cpus, resources.gpus
        if cpus > self.cpus or gpus > self.gpus:
            raise ConfigError(
                f"{what} asks cpus={cpus}, gpus={gpus}; "
                f"the {self.owner} has cpu_slots={self.cpus}, gpu_slots={self.gpus}"
            )

    def offer(self) -> dict[str, float | frozenset[str]]:
        """What a job may ask of these slots (see :mod:`corral.core.capacity`)."""
        # a machine sets no time limit
        offer: dict[str, float | frozenset[str]] = {
            "cpus": self.cpus, "gpus": self.gpus, "time": float("inf")
        }
        if self.gpu_type is not None:
            offer["gpu_type"] = frozenset({self.gpu_type})
        return offer

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

    def environ(self, root: str | None, need_cpus: int, need_gpus: int) -> dict[str, str]:
        """The lease variables of a job (see :func:`acquire`).

        ``root`` holds the lock files; None means the slot directory of the host where the
        job runs (:func:`host_dir`, resolved there).
        """
        prefix = "" if root is None else f"{root.rstrip('/')}/"
        env = {"CORRAL_CPU_SLOTS": f"{prefix}cpu:{self.cpus}:{need_cpus}"}
        if need_gpus:
            env["CORRAL_GPU_SLOTS"] = f"{prefix}gpu:{self.gpus}:{need_gpus}"
        return env
