"""Resolving SSH destinations: shorthand, ssh config, explicit overrides, conflicts."""

from __future__ import annotations

import pytest

from corral import ConfigError
from corral.connectors.ssh import remote_command
from corral.connectors.ssh_config import resolve, split_destination


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("host", (None, "host", None)),
        ("bob@host", ("bob", "host", None)),
        ("bob@host:2200", ("bob", "host", 2200)),
        ("host:22", (None, "host", 22)),
        ("[::1]:2222", (None, "::1", 2222)),
        ("bob@[fe80::1]", ("bob", "fe80::1", None)),
    ],
)
def test_split_destination(text, expected):
    assert split_destination(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "expected 'host', 'user@host' or 'user@host:port'"),
        ("host:abc", "port 'abc' is not a number"),
        ("host:70000", "port 70000 is out of range"),
        ("@host", "empty user or host name"),
        ("[::1", "unclosed '\\['"),
    ],
)
def test_bad_destinations(text, message):
    with pytest.raises(ConfigError, match=message):
        split_destination(text)


@pytest.fixture
def config(tmp_path):
    key = tmp_path / "id_test"
    key.write_text("not really a key")
    path = tmp_path / "config"
    path.write_text(
        f"Host gpubox\n    HostName 10.1.2.3\n    User alice\n    Port 2200\n"
        f"    IdentityFile {key}\n    UserKnownHostsFile {tmp_path}/kh\n"
        f"Host behind\n    HostName 10.9.9.9\n    ProxyJump gpubox\n"
    )
    return path, key


def test_config_values_are_used(config, tmp_path):
    path, key = config
    d = resolve("gpubox", config_file=path)
    assert (d.hostname, d.port, d.user) == ("10.1.2.3", 2200, "alice")
    assert d.key_filenames == (str(key),)
    assert d.known_hosts == (f"{tmp_path}/kh",)
    assert d.proxy_jump is None
    assert resolve("behind", config_file=path).proxy_jump == "gpubox"


def test_explicit_values_override_the_config(config):
    path, _ = config
    d = resolve("bob@gpubox:2201", config_file=path)
    assert (d.user, d.port) == ("bob", 2201)
    d = resolve("gpubox", config_file=path, user="carol", port=2202)
    assert (d.user, d.port) == ("carol", 2202)
    # the same value given twice explicitly is fine
    assert resolve("bob@gpubox", config_file=path, user="bob").user == "bob"


def test_two_explicit_values_that_disagree_are_an_error(config):
    path, _ = config
    with pytest.raises(ConfigError, match="user given twice with different values"):
        resolve("bob@gpubox", config_file=path, user="alice")
    with pytest.raises(ConfigError, match="port given twice"):
        resolve("gpubox:22", config_file=path, port=23)


def test_missing_files_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="SSH config file .* does not exist"):
        resolve("h", config_file=tmp_path / "nope")
    empty = tmp_path / "empty"
    empty.write_text("")
    with pytest.raises(ConfigError, match="SSH key file .* does not exist"):
        resolve("h", config_file=empty, key_filename=tmp_path / "nokey")


def test_remote_command_quotes_every_value():
    cmd = remote_command(["echo", "a b", "$(x)"], cwd="/d ir", env={"K": "v'w"})
    assert cmd == "cd '/d ir' && env 'K=v'\"'\"'w' echo 'a b' '$(x)'"
    assert remote_command(["true"], login_shell=True) == "bash -lc true"
    with pytest.raises(ConfigError, match="invalid environment variable name"):
        remote_command(["true"], env={"A B": "x"})
