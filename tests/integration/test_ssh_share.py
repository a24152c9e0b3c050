"""The SSH connection shared by every corral process of the user (its holder), against the
rig's real sshd with key logins: one login for many processes, a dead holder replaced, the
socket kept from other users, the idle time, ``corral ssh``, OpenSSH's ControlMaster."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from corral import ConnectorError
from corral.connectors.ssh import SSHConnector, close_all
from corral.connectors.ssh_share import holders, runtime_dir, shut_all

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def no_holder(monkeypatch):
    """Each test starts with no shared connection, and leaves none."""
    monkeypatch.delenv("CORRAL_SSH_PERSIST", raising=False)
    close_all()
    shut_all()
    wait_for(lambda: not holders(), "the holders to leave")
    yield
    close_all()
    shut_all()


def wait_for(condition: Callable[[], object], what: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def key_logins(ssh_host) -> int:
    log = Path(os.environ.get("CORRAL_RIG_DIR") or REPO / ".rig") / "log" / "sshd.out"
    return log.read_text(errors="replace").count(f"Accepted publickey for {ssh_host.user}")


def settled_logins(ssh_host) -> int:
    """sshd logs a login a moment after it; read the count once it stopped moving."""
    last = key_logins(ssh_host)
    time.sleep(0.3)
    while (now := key_logins(ssh_host)) != last:
        last = now
        time.sleep(0.3)
    return now


OPERATIONS = textwrap.dedent(
    """
    import sys
    from corral.connectors.ssh import SSHConnector

    alias, config, base, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    c = SSHConnector(alias, config_file=config)
    for i in range(n):
        assert c.run(["echo", str(i)], check=True).stdout == f"{i}\\n"
        c.write_text(f"{base}/f{i}", str(i))
        assert c.read_text(f"{base}/f{i}") == str(i)
    print(c.sharing)
    """
)


def corral_process(ssh_host, base: str, n: int = 20, **env: str) -> subprocess.CompletedProcess:
    """A separate corral process doing ``n`` rounds of command, write and read, without a
    terminal."""
    return subprocess.run(
        [sys.executable, "-c", OPERATIONS, ssh_host.alias, str(ssh_host.ssh_config), base,
         str(n)],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
        start_new_session=True, env={**os.environ, "PYTHONPATH": str(REPO), **env},
    )


def test_five_processes_in_a_row_log_in_once(ssh_host):
    before = settled_logins(ssh_host)
    c = SSHConnector(ssh_host.alias, config_file=ssh_host.ssh_config)
    assert c.sharing == "shared"
    base = c.run(["mktemp", "-d"], check=True).stdout.strip()
    for _ in range(5):
        done = corral_process(ssh_host, base)
        assert done.returncode == 0, done.stderr
        assert done.stdout == "shared\n"
    assert len(c.listdir(base)) == 20
    c.remove(base, recursive=True)
    assert settled_logins(ssh_host) - before == 1
    (holder,) = holders()
    assert holder["connects"] == 1
    assert holder["alias"] == ssh_host.alias


def test_processes_at_the_same_time_start_one_holder(ssh_host):
    c = SSHConnector(ssh_host.alias, config_file=ssh_host.ssh_config, persist=0)
    base = c.run(["mktemp", "-d"], check=True).stdout.strip()
    before = settled_logins(ssh_host)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", OPERATIONS, ssh_host.alias, str(ssh_host.ssh_config),
             f"{base}", "10"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            stdin=subprocess.DEVNULL, start_new_session=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        for _ in range(4)
    ]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    assert settled_logins(ssh_host) - before == 1  # the holder's (the check's own came first)
    assert len(holders()) == 1
    c.remove(base, recursive=True)


def test_sharing_off_logs_in_per_process(ssh_host):
    c = SSHConnector(ssh_host.alias, config_file=ssh_host.ssh_config, persist=0)
    assert c.sharing == "own"
    base = c.run(["mktemp", "-d"], check=True).stdout.strip()
    before = settled_logins(ssh_host)
    for _ in range(2):
        done = corral_process(ssh_host, base, n=2, CORRAL_SSH_PERSIST="0")
        assert done.returncode == 0, done.stderr
        assert done.stdout == "own\n"
    assert settled_logins(ssh_host) - before == 2
    assert holders() == []
    c.remove(base, recursive=True)


def holder_pid() -> int:
    (holder,) = holders()
    return int(holder["pid"])


def test_a_killed_holder_is_replaced_at_once(ssh_host):
    c = SSHConnector(ssh_host.alias, config_file=ssh_host.ssh_config)
    assert c.run(["true"]).ok
    first = holder_pid()
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: not Path(f"/proc/{first}").exists(), "the holder to die")
    started = time.monotonic()
    assert c.run(["echo", "again"], check=True).stdout == "again\n"
    assert c.exists("/")  # the SFTP session of the dead holder is replaced too
    assert time.monotonic() - started < 5
    assert holder_pid() != first


def test_a_socket_nobody_listens_on_is_replaced(ssh_host):
    c = SSHConnector(ssh_host.alias, config_file=ssh_host.ssh_config)
    assert c.run(["true"]).ok
    (holder,) = holders()
    c.close_shared()
    wait_for(lambda: not Path(holder["socket"]).exists(), "the socket to go")
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(holder["socket"])  # bound, never listening: a crashed holder's leftover
    stale.close()
    started = time.monotonic()
    assert c.run(["echo", "fresh"], check=True).stdout == "fresh\n"
    assert time.monotonic() - started < 5


def test_the_holder_reconnects_after_sshd_restarts_without_asking(ssh_host):
    c = SSHConnector(ssh_host.alias, config_file=ssh_host.ssh_config)
    base = c.run(["mktemp", "-d"], check=True).stdout.strip()
    for i in range(10):
        if i == 5:
            subprocess.run(["bash", str(REPO / "tests/rig/rig.sh"), "restart", "sshd"],
                           check=True, capture_output=True)
        c.write_text(f"{base}/f{i}", str(i))
        assert c.run(["cat", f"{base}/f{i}"], check=True).stdout == str(i)
    assert c.connections == 2
    c.remove(base, recursive=True)


def test_the_holder_leaves_after_its_idle_time(ssh_host):
    done = corral_process(ssh_host, "/tmp", n=1, CORRAL_SSH_PERSIST="1")
    assert done.returncode == 0, done.stderr
    (holder,) = holders()
    assert holder["persist"] == 1
    wait_for(lambda: not holders(), "the idle holder to leave", timeout=10)


def test_a_socket_directory_others_can_enter_is_refused(ssh_host):
    root = runtime_dir()
    try:
        root.chmod(0o755)
        with pytest.raises(ConnectorError, match="can be entered by other users") as e:
            SSHConnector(ssh_host.alias, config_file=ssh_host.ssh_config).run(["true"])
        assert "chmod 700" in str(e.value)
        assert "\n" not in str(e.value)
    finally:
        root.chmod(0o700)


PEER = textwrap.dedent(
    """
    import socket, sys
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    try:
        s.connect(sys.argv[1])
    except OSError as exc:
        print("connect:", type(exc).__name__)
        raise SystemExit
    try:
        s.sendall(b'{"op": "exec", "command": "id -un", "stdin": false}\\n')
        answer = s.recv(4096)
    except OSError:  # refused: reset, or a broken pipe
        answer = b""
    print("answer:", repr(answer))
    """
)


def as_other_user(user: str, sock: str) -> str:
    done = subprocess.run(
        ["runuser", "-u", user, "--", "/usr/bin/python3", "-c", PEER, sock],
        capture_output=True, text=True, timeout=30, cwd="/",
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_another_local_user_cannot_use_the_connection(ssh_host, logins):
    c = SSHConnector(ssh_host.alias, config_file=ssh_host.ssh_config)
    assert c.run(["true"]).ok
    (holder,) = holders()
    sock = holder["socket"]
    root = runtime_dir()
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    assert stat.S_IMODE(os.stat(sock).st_mode) & 0o077 == 0
    # the directory keeps them out...
    assert as_other_user(logins.other_user, sock) == "connect: PermissionError"
    # ...and were it opened by mistake, the holder checks who is calling (SO_PEERCRED)
    parents = [p for p in [root, *root.parents] if p != Path("/")]
    modes = {p: stat.S_IMODE(p.stat().st_mode) for p in parents}
    try:
        for p in parents:
            p.chmod(modes[p] | 0o011)
        os.chmod(sock, 0o777)
        assert as_other_user(logins.other_user, sock) == "answer: b''"
    finally:
        for p, mode in modes.items():
            p.chmod(mode)
        os.chmod(sock, 0o600)
    assert c.run(["echo", "still mine"], check=True).stdout == "still mine\n"


def corral(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "corral", *args], capture_output=True, text=True, timeout=120,
        stdin=subprocess.DEVNULL, start_new_session=True,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
    )


@pytest.fixture
def hosts_file(ssh_host, tmp_path) -> dict[str, str]:
    """A hosts file declaring the rig's sshd as ``box``; the environment that reads it."""
    config_home = tmp_path / "xdg"
    (config_home / "corral").mkdir(parents=True)
    (config_home / "corral" / "hosts.toml").write_text(textwrap.dedent(f"""
        [hosts.box]
        launcher = "ssh"
        workdir = "/home/{ssh_host.user}/box"
        ssh = {{ host = "{ssh_host.alias}", config_file = "{ssh_host.ssh_config}" }}
        """))
    return {"XDG_CONFIG_HOME": str(config_home)}


def test_corral_ssh_open_status_close(ssh_host, hosts_file):
    assert "no shared SSH connection is open" in corral("ssh", "status", env=hosts_file).stdout
    opened = corral("ssh", "open", "box", env=hosts_file)
    assert opened.returncode == 0, opened.stderr
    assert opened.stdout.startswith(f"box (corraltest@127.0.0.1:{ssh_host.port}): logged in;")
    assert "corral ssh close box" in opened.stdout
    again = corral("ssh", "open", ssh_host.alias, env=hosts_file)  # its ssh alias finds it too
    assert "already open" in again.stdout, again.stderr
    status = corral("ssh", "status", env=hosts_file).stdout
    assert status.startswith(f"{ssh_host.alias} (corraltest@127.0.0.1:{ssh_host.port}): open ")
    assert "idle" in status
    closed = corral("ssh", "close", "box", env=hosts_file)
    assert closed.stdout == "box: closed\n"
    wait_for(lambda: not holders(), "the holder to leave")
    assert corral("ssh", "close", "box", env=hosts_file).stdout == (
        "box: no shared connection was open\n"
    )


def test_corral_ssh_close_all(ssh_host, ssh_host2):
    for host in (ssh_host, ssh_host2):
        assert SSHConnector(host.alias, config_file=host.ssh_config).run(["true"]).ok
    assert len(holders()) == 2
    done = corral("ssh", "close", "--all")
    assert done.stdout == "closed 2 shared connection(s)\n"
    wait_for(lambda: not holders(), "the holders to leave")


def test_corral_ssh_close_needs_a_host_or_all():
    done = corral("ssh", "close")
    assert done.returncode == 2
    assert "give a HOST or --all" in done.stderr


def test_openssh_control_master_is_used_where_the_config_asks(ssh_host, tmp_path):
    control = Path(tempfile.mkdtemp(prefix="cm-", dir="/tmp"))  # a socket path is short
    config = tmp_path / "ssh_config"
    config.write_text(
        ssh_host.ssh_config.read_text()
        + f"\nHost mastered\n    HostName 127.0.0.1\n    Port {ssh_host.port}\n"
        f"    User {ssh_host.user}\n    IdentityFile {ssh_host.key}\n"
        f"    UserKnownHostsFile {ssh_host.known_hosts}\n    ControlMaster auto\n"
        f"    ControlPath {control}/%C\n    ControlPersist 60\n"
    )
    c = SSHConnector("mastered", config_file=config)
    assert c.sharing == "openssh"
    before = settled_logins(ssh_host)
    try:
        assert c.open_shared() is True
        base = c.run(["mktemp", "-d"], check=True).stdout.strip()
        for i in range(5):
            c.write_text(f"{base}/f{i}", str(i))
            assert c.run(["cat", f"{base}/f{i}"], check=True).stdout == str(i)
        assert c.run(["sh", "-c", "cat; echo $0"], input="in\n").stdout == "in\nsh\n"
        assert "".join(c.stream(["echo", "streamed"])) == "streamed\n"
        assert c.listdir(base) == [f"f{i}" for i in range(5)]
        c.remove(base, recursive=True)
        assert settled_logins(ssh_host) - before == 1  # all of it through the one master
        assert holders() == []  # corral's own holder stays out of it
        assert c.open_shared() is False
    finally:
        assert c.close_shared() is True
    assert not list(control.iterdir())
    control.rmdir()


def test_more_sessions_than_the_host_allows_at_once_wait_for_room(ssh_host):
    """sshd allows 10 sessions per connection (MaxSessions, as Debian ships it): 12 commands
    at once from this process and 12 other processes, each with its SFTP session, all share
    the one connection; what finds no room waits for it, nothing fails."""
    from concurrent.futures import ThreadPoolExecutor

    c = SSHConnector(ssh_host.alias, config_file=ssh_host.ssh_config)
    base = c.run(["mktemp", "-d"], check=True).stdout.strip()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", OPERATIONS, ssh_host.alias, str(ssh_host.ssh_config),
             base, "5"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            stdin=subprocess.DEVNULL, start_new_session=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        for _ in range(12)
    ]
    with ThreadPoolExecutor(12) as pool:
        outs = list(pool.map(lambda i: c.run(["sh", "-c", f"sleep 1; echo {i}"]).stdout,
                             range(12)))
    done = [(*p.communicate(timeout=120), p.returncode) for p in procs]
    assert outs == [f"{i}\n" for i in range(12)]
    assert [(out, code) for out, _, code in done] == [("shared\n", 0)] * 12, done
    (holder,) = holders()
    assert holder["connects"] == 1
    c.remove(base, recursive=True)
