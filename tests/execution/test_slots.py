"""Slot leases are the machine's: shared by every workspace, client and Unix user."""

from __future__ import annotations

import os
import stat
import subprocess
import threading
import uuid
from pathlib import Path

import pytest

from corral import experiment
from corral.core import slots
from corral.launchers.local import LocalLauncher
from tests.execution.tasks import GpuRecord, read_log


@pytest.fixture
def shared_slots(monkeypatch):
    """A fresh machine slot directory under /tmp (reachable by every user), set as the
    host's ``$CORRAL_SLOTS_DIR`` (jobs of the local launcher inherit it)."""
    path = Path(f"/tmp/corral-slots-test-{uuid.uuid4().hex[:10]}")
    monkeypatch.setenv(slots.ENV, str(path))
    yield path
    subprocess.run(["rm", "-rf", "--", str(path)], check=False)


def test_default_slot_directory_is_machine_wide(monkeypatch):
    monkeypatch.delenv(slots.ENV, raising=False)
    launcher = LocalLauncher(cpu_slots=2, gpu_slots=1)
    env = launcher.slots.environ(launcher.slots_dir, 1, 1)
    assert env == {"CORRAL_CPU_SLOTS": "cpu:2:1", "CORRAL_GPU_SLOTS": "gpu:1:1"}
    assert slots.parse(env["CORRAL_GPU_SLOTS"]) == (Path("/tmp/corral-slots/gpu"), 1, 1)
    monkeypatch.setenv(slots.ENV, "/elsewhere")
    assert slots.parse(env["CORRAL_CPU_SLOTS"]) == (Path("/elsewhere/cpu"), 2, 1)
    explicit = LocalLauncher(cpu_slots=2, slots_dir="/srv/slots/")
    assert explicit.slots.environ(explicit.slots_dir, 1, 0) == {
        "CORRAL_CPU_SLOTS": "/srv/slots/cpu:2:1"
    }


def test_directories_are_sticky_and_world_writable_and_locks_readable_by_all(shared_slots):
    old = os.umask(0o077)
    try:
        lease = slots.acquire(shared_slots / "gpu", 2, 2)
    finally:
        os.umask(old)
    lease.release()
    for directory in (shared_slots, shared_slots / "gpu"):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o1777
    for i in range(2):
        assert stat.S_IMODE((shared_slots / "gpu" / f"{i}.lock").stat().st_mode) == 0o666


LEASE = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("slots", sys.argv[1])
slots = importlib.util.module_from_spec(spec)
spec.loader.exec_module(slots)
lease = slots.acquire(slots.Path(sys.argv[2]), 2, 2, max_pause=0.05)
print(",".join(map(str, lease.indices)), flush=True)
sys.stdin.read()
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a process as another user")
@pytest.mark.skipif(not os.path.exists("/usr/bin/python3"), reason="needs /usr/bin/python3")
def test_a_second_unix_user_leases_the_same_files(shared_slots):
    old = os.umask(0o077)
    try:
        mine = slots.acquire(shared_slots / "cpu", 2, 1)
    finally:
        os.umask(old)
    other = subprocess.Popen(  # slots.py alone: it needs nothing but the standard library
        ["/usr/bin/python3", "-c", LEASE, slots.__file__, str(shared_slots / "cpu")],
        user="nobody",
        cwd="/",
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        threading.Timer(1.0, mine.release).start()  # nobody waits for our slot, then gets it
        assert other.stdout is not None
        leased = other.stdout.readline().strip()
    finally:
        other.kill()
        _, err = other.communicate()
    assert leased == "0,1", err


def test_two_launchers_with_different_workspaces_never_share_a_gpu(tmp_path, shared_slots):
    log = tmp_path / "log.jsonl"

    def client(tag: str) -> None:
        launcher = LocalLauncher(cpu_slots=4, gpu_slots=2)
        with experiment(tmp_path / f"ws-{tag}", "gpus", launcher=launcher):
            for i in range(3):
                GpuRecord(name=f"{tag}{i}", sleep=0.5, log=log).submit()

    threads = [threading.Thread(target=client, args=(tag,)) for tag in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    records = read_log(log)
    assert len(records) == 6
    assert {r["cuda"] for r in records} == {"0", "1"}
    for a in records:  # no two jobs overlapping in time ever shared a GPU
        for b in records:
            if a is not b and a["start"] < b["end"] and b["start"] < a["end"]:
                assert a["cuda"] != b["cuda"], (a, b)
