"""Faults of the machine and of the network: clear errors, nothing half-written.

A full or read-only workspace (a small tmpfs, a read-only bind mount: the tests run as root,
who may write anywhere else), an unreachable host, a wrong key, an unknown host key.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral import (
    AuthenticationError,
    ConfigError,
    ConnectorError,
    CorralError,
    HostKeyError,
    experiment,
)
from corral.connectors.ssh import SSHConnector, close_all
from corral.launchers.local import LocalLauncher
from corral.launchers.ssh import SSHLauncher
from tests.execution.tasks import Record
from tests.rig.fixtures import in_ci

pytestmark = pytest.mark.reliability


@pytest.fixture(autouse=True)
def fresh_pool():
    yield
    close_all()


@contextlib.contextmanager
def mounted(target: Path, *options: str) -> Iterator[Path]:
    """Mount something at ``target`` for the block (root only), then unmount it."""
    if os.geteuid() != 0:  # a developer machine without root may skip; CI may not
        message = "mounting needs root (CI runs as root)"
        pytest.fail(message) if in_ci() else pytest.skip(message)
    target.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", *options, str(target)], check=True, capture_output=True)
    try:
        yield target
    finally:
        # Detached jobs may still be leaving: wait for them, then detach the mount lazily.
        # Never `fuser -k -m`: on a bind mount it names every process of the root file
        # system, the test rig's daemons and the test session among them.
        for _ in range(50):
            if subprocess.run(["umount", str(target)], capture_output=True).returncode == 0:
                break
            time.sleep(0.2)
        else:
            subprocess.run(["umount", "-l", str(target)], check=True, capture_output=True)


def test_a_full_workspace_is_a_clear_error_and_leaves_no_half_written_file(tmp_path):
    with mounted(tmp_path / "small", "-t", "tmpfs", "-o", "size=256k", "tmpfs") as small:
        with pytest.raises(CorralError) as e:
            with experiment(small / "ws", "full", launcher=LocalLauncher(cpu_slots=2),
                            progress=False):
                for i in range(300):
                    Record(name="x" * 3000 + str(i), log=tmp_path / "log").submit()
        message = str(e.value)
        assert "No space left on device" in message and str(small) in message
        assert "\n" not in message
        leftovers = [p for p in small.rglob("*") if p.name.endswith(".tmp")]
        assert leftovers == []
        for params in small.rglob("params.json"):  # every file there is whole
            json.loads(params.read_text())


def test_a_read_only_workspace_is_refused_at_once(tmp_path):
    source = tmp_path / "ws"
    source.mkdir()
    with mounted(source, "--bind", str(source)):
        subprocess.run(["mount", "-o", "remount,ro,bind", str(source)], check=True)
        with pytest.raises(ConfigError) as e:
            with experiment(source, "ro", launcher=LocalLauncher(cpu_slots=1)):
                pass
    assert str(e.value).startswith(f"workspace {source} is not writable")
    assert "Read-only file system" in str(e.value)


def launcher(ssh_host, rig, tmp_path, **connector) -> SSHLauncher:
    options = {"config_file": ssh_host.ssh_config, **connector}
    return SSHLauncher(SSHConnector(ssh_host.alias, **options),
                       workdir="/home/corraltest/faults", python=rig.python)


def test_an_unreachable_host_is_a_connector_error_naming_it(tmp_path, rig, ssh_host):
    closed = launcher(ssh_host, rig, tmp_path, port=1)  # nothing listens there
    with pytest.raises(ConnectorError) as e:
        with experiment(tmp_path / "ws", "unreachable", launcher=closed):
            Record(name="r", log="/tmp/never").submit()
    assert "127.0.0.1:1" in str(e.value) and "\n" not in str(e.value)
    assert not list((tmp_path / "ws" / "jobs").rglob("*.json"))  # nothing was recorded


def test_a_wrong_key_is_an_authentication_error(tmp_path, rig, ssh_host):
    key = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    wrong = launcher(ssh_host, rig, tmp_path, key_filename=str(key))
    with pytest.raises(AuthenticationError) as e:
        with experiment(tmp_path / "ws", "wrong-key", launcher=wrong):
            Record(name="r", log="/tmp/never").submit()
    assert "corraltest@127.0.0.1" in str(e.value) and "\n" not in str(e.value)


def test_an_unknown_host_key_is_refused_not_trusted(tmp_path, rig, ssh_host):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    stranger = launcher(ssh_host, rig, tmp_path, known_hosts=str(empty))
    with pytest.raises(HostKeyError) as e:
        with experiment(tmp_path / "ws", "unknown-key", launcher=stranger):
            Record(name="r", log="/tmp/never").submit()
    assert str(empty) in str(e.value)
    assert empty.read_text() == ""  # never recorded silently
