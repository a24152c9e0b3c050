"""Local process identity: a pid plus its start time, so a reused pid is never "ours"; and
this machine's name."""

from __future__ import annotations

from functools import lru_cache
from typing import Any


@lru_cache(maxsize=1)
def boot_id() -> str:
    """This boot's id (pids and start times are meaningful within one boot only)."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


@lru_cache(maxsize=1)
def hostname() -> str:
    """This machine's host name, asked once (every job's location and provenance carry it)."""
    import socket  # not at the top: a job process imports this module and needs no socket

    return socket.gethostname()


def _stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    return data[data.rindex(")") + 2 :].split()


def start_time(pid: int) -> int | None:
    """The start time of ``pid`` in clock ticks since boot, or None if there is no such pid."""
    fields = _stat(pid)
    return int(fields[19]) if fields else None


def handle_for(pid: int) -> dict[str, Any]:
    """The JSON handle recording a local process."""
    return {"pid": pid, "start": start_time(pid), "boot": boot_id()}


def handle_alive(handle: Any) -> bool:
    """Whether the process of ``handle`` still runs (same pid, same start, not a zombie)."""
    if not isinstance(handle, dict) or not isinstance(handle.get("pid"), int):
        return False
    if handle.get("boot") != boot_id():
        return False
    fields = _stat(handle["pid"])
    if fields is None or fields[0] in ("Z", "X"):
        return False
    return int(fields[19]) == handle.get("start")
