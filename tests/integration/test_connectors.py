"""One conformance module for every connector: local, SSH on loopback, SSH to the netns host."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import PurePosixPath

import pytest

from corral import ConnectorError
from corral.connectors.base import Connector
from corral.connectors.local import LocalConnector
from corral.connectors.ssh import SSHConnector

NAMES = ["plain.txt", "with space.txt", "quote'd \"name\".txt", "ünïcødé ✓.txt", "$(x) `y`.txt"]


@pytest.fixture(params=["local", "ssh", "ssh-netns"])
def connector_and_dir(request, tmp_path) -> Iterator[tuple[Connector, PurePosixPath]]:
    if request.param == "local":
        yield LocalConnector(), PurePosixPath(tmp_path / "target")
        return
    host = request.getfixturevalue("ssh_host" if request.param == "ssh" else "ssh_host2")
    connector = SSHConnector(host.alias, config_file=host.ssh_config)
    base = PurePosixPath(connector.run(["mktemp", "-d"], check=True).stdout.strip())
    yield connector, base / "target"
    connector.run(["rm", "-rf", "--", str(base)], check=True)


def test_run_argv_is_passed_exactly(connector_and_dir):
    connector, _ = connector_and_dir
    weird = ["a b", "it's", '"q"', "$(touch /tmp/corral-pwned)", "`x`", "ü✓", "*", ";", "\n"]
    result = connector.run(["printf", "%s|", *weird], check=True)
    assert result.stdout == "|".join(weird) + "|"
    assert result.ok
    assert result.argv[0] == "printf"


def test_run_cwd_env_input_and_exit_code(connector_and_dir):
    connector, base = connector_and_dir
    connector.mkdir(base / "cwd here")
    result = connector.run(
        ["sh", "-c", 'pwd; printf "%s" "$VALUE"; cat; echo err >&2; exit 3'],
        cwd=base / "cwd here",
        env={"VALUE": "v'$(no)"},
        input="from stdin\n",
    )
    assert result.returncode == 3
    assert not result.ok
    assert result.stdout == f"{base / 'cwd here'}\nv'$(no)from stdin\n"
    assert result.stderr == "err\n"


def test_run_check_raises_with_the_last_stderr_line(connector_and_dir):
    connector, _ = connector_and_dir
    with pytest.raises(ConnectorError, match="exited with 2: second"):
        connector.run(["sh", "-c", "echo first >&2; echo second >&2; exit 2"], check=True)


def test_run_timeout(connector_and_dir):
    connector, _ = connector_and_dir
    with pytest.raises(ConnectorError, match="timed out after 0.5 s"):
        connector.run(["sleep", "5"], timeout=0.5)


def test_missing_command(connector_and_dir):
    connector, _ = connector_and_dir
    if isinstance(connector, LocalConnector):
        with pytest.raises(ConnectorError, match="command not found: no-such-command"):
            connector.run(["no-such-command"])
    else:  # the remote shell reports it
        assert connector.run(["no-such-command"]).returncode == 127


def test_large_output_does_not_block(connector_and_dir):
    connector, _ = connector_and_dir
    result = connector.run(["sh", "-c", "head -c 3000000 /dev/zero | tr '\\0' a; "
                            "head -c 2000000 /dev/zero | tr '\\0' b >&2"], check=True)
    assert len(result.stdout) == 3_000_000
    assert len(result.stderr) == 2_000_000


@pytest.mark.parametrize("name", NAMES)
def test_files_with_awkward_names(connector_and_dir, tmp_path, name):
    connector, base = connector_and_dir
    directory = base / "sub dir" / "ü"
    connector.mkdir(directory)
    path = directory / name
    assert not connector.exists(path)
    connector.write_text(path, "contenu ✓\nline 2\n")
    assert connector.exists(path)
    assert connector.read_text(path) == "contenu ✓\nline 2\n"
    assert connector.listdir(directory) == [name]
    local = tmp_path / f"local-{uuid.uuid4().hex}"
    connector.get(path, local)
    assert local.read_text() == "contenu ✓\nline 2\n"
    local.write_text("uploaded")
    connector.put(local, directory / f"up {name}")
    assert connector.read_text(directory / f"up {name}") == "uploaded"
    connector.remove(path)
    assert not connector.exists(path)
    connector.remove(path)  # missing is fine


def test_write_text_is_atomic_and_sets_mode(connector_and_dir):
    connector, base = connector_and_dir
    connector.mkdir(base)
    path = base / "script.sh"
    connector.write_text(path, "old")
    connector.write_text(path, "#!/bin/sh\necho new\n", mode=0o755)
    assert connector.read_text(path) == "#!/bin/sh\necho new\n"
    assert connector.run([str(path)], check=True).stdout == "new\n"
    assert connector.listdir(base) == ["script.sh"]  # no temporary file left behind


def test_mkdir_exists_remove_recursive(connector_and_dir):
    connector, base = connector_and_dir
    deep = base / "a" / "b" / "c"
    connector.mkdir(deep)
    connector.mkdir(deep)  # exist_ok
    with pytest.raises(ConnectorError):
        connector.mkdir(deep, exist_ok=False)
    connector.write_text(deep / "f", "x")
    connector.remove(base / "a", recursive=True)
    assert not connector.exists(base / "a")
    assert connector.exists(base)


def test_missing_file_errors_name_the_path(connector_and_dir):
    connector, base = connector_and_dir
    with pytest.raises(ConnectorError, match="nope.txt"):
        connector.read_text(base / "nope.txt")
    with pytest.raises(ConnectorError, match="missing-dir"):
        connector.listdir(base / "missing-dir")


def test_context_manager_closes_and_reuse_reconnects(connector_and_dir):
    connector, _ = connector_and_dir
    with connector as c:
        assert c.run(["true"]).ok
    assert connector.run(["echo", "again"], check=True).stdout == "again\n"
