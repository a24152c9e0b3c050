"""Resolving SSH destinations: shorthand, ssh config, explicit overrides, conflicts."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral import ConfigError, ConnectorError
from corral.connectors.ssh import remote_command
from corral.connectors.ssh_config import auth_methods, resolve, split_destination
from corral.connectors.ssh_share import openssh_time, persist_seconds


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
    cmd = remote_command(["echo", "a b", "$(x)"], cwd="/d ir", env={"K": "v'w"}, stdin=True)
    assert cmd == "cd '/d ir' && env 'K=v'\"'\"'w' echo 'a b' '$(x)'"
    assert remote_command(["true"], login_shell=True, stdin=True) == "bash -lc true"


def test_a_remote_command_without_input_reads_dev_null():
    # No end of input to send after it: sent once a quick command's channel is gone, sshd
    # drops the whole connection ("ieof packet referred to nonexistent channel").
    assert remote_command(["cat"]) == "cat </dev/null"
    assert remote_command(["cat"], cwd="/d") == "cd /d && cat </dev/null"
    assert remote_command(["cat"], login_shell=True) == "bash -lc cat </dev/null"
    with pytest.raises(ConfigError, match="invalid environment variable name"):
        remote_command(["true"], env={"A B": "x"})


@pytest.mark.parametrize(
    ("entry", "methods"),
    [
        ({}, ("publickey", "keyboard-interactive", "password")),
        ({"preferredauthentications": "keyboard-interactive,publickey"},
         ("keyboard-interactive", "publickey")),
        ({"preferredauthentications": "password,kbdinteractive"},
         ("password", "keyboard-interactive")),
        ({"passwordauthentication": "no"}, ("publickey", "keyboard-interactive")),
        ({"kbdinteractiveauthentication": "no", "pubkeyauthentication": "no"}, ("password",)),
        ({"challengeresponseauthentication": "no"}, ("publickey", "password")),
        ({"preferredauthentications": "gssapi-with-mic,publickey"}, ("publickey",)),
    ],
)
def test_auth_methods_follow_the_ssh_config(entry, methods):
    assert auth_methods(entry) == methods


def test_control_options_are_read(tmp_path):
    config = tmp_path / "config"
    config.write_text(
        "Host mastered\n    ControlMaster auto\n    ControlPath ~/.ssh/cm-%C\n"
        "    ControlPersist 10m\n    AddKeysToAgent yes\n    IdentitiesOnly yes\n"
    )
    d = resolve("mastered", config_file=config)
    assert (d.control_master, d.control_persist, d.add_keys_to_agent) == ("auto", "10m", "yes")
    assert d.control_path is not None and d.control_path.startswith(str(Path.home()))
    assert d.identities_only


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("600", 600), ("10m", 600), ("1h30m", 5400), ("2d", 172800), ("1w", 604800),
     ("90s", 90), ("1.5", 1.5), ("10 m", None), ("ten", None), ("", None), ("5x", None)],
)
def test_openssh_times(text, seconds):
    assert openssh_time(text) == seconds


@pytest.mark.parametrize(
    ("env", "persist", "expected"),
    [(None, None, 600), (None, "10m", 600), (None, "yes", float("inf")), (None, "no", 0),
     ("0", "10m", 0), ("30", None, 30), ("2m", "yes", 120)],
)
def test_how_long_a_shared_connection_stays(env, persist, expected, monkeypatch, tmp_path):
    if env is None:
        monkeypatch.delenv("CORRAL_SSH_PERSIST", raising=False)
    else:
        monkeypatch.setenv("CORRAL_SSH_PERSIST", env)
    dest = resolve("somewhere", config_file=_empty(tmp_path))._replace(control_persist=persist)
    assert persist_seconds(dest, None) == expected
    assert persist_seconds(dest, 5) == 5  # the connector's own argument wins


def test_a_bad_persist_time_names_where_it_came_from(monkeypatch, tmp_path):
    monkeypatch.setenv("CORRAL_SSH_PERSIST", "soon")
    dest = resolve("somewhere", config_file=_empty(tmp_path))
    with pytest.raises(ConnectorError, match=r"\$CORRAL_SSH_PERSIST 'soon': expected seconds"):
        persist_seconds(dest, None)
    monkeypatch.delenv("CORRAL_SSH_PERSIST")
    with pytest.raises(ConnectorError, match=r"^ControlPersist 'later'"):
        persist_seconds(dest._replace(control_persist="later"), None)


def _empty(tmp_path: Path) -> Path:
    path = tmp_path / "empty_config"
    path.write_text("")
    return path
