"""The SSH connector against the rig's real sshd: resolution, host keys, auth, reuse, faults."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import paramiko
import pytest

from corral import AuthenticationError, ConnectorError, HostKeyError
from corral.connectors import ssh_transport
from corral.connectors.ssh import SSHConnector, close_all
from corral.connectors.ssh_transport import fingerprint
from tests.rig.fixtures import SSHHost

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def fresh_pool(monkeypatch):
    # These tests look into this process's own connection (its transport, its SFTP session):
    # sharing off. The shared connection has its tests in test_ssh_share.py.
    monkeypatch.setenv("CORRAL_SSH_PERSIST", "0")
    close_all()
    yield
    close_all()


def rig_fingerprint(rig_dir: Path, name: str = "sshd") -> str:
    pub = (rig_dir / "ssh" / f"{name}_host_ed25519_key.pub").read_text().split()
    return fingerprint(paramiko.Ed25519Key(data=__import__("base64").b64decode(pub[1])))


def accepted_logins(rig_dir: Path) -> int:
    log = rig_dir / "log" / "sshd.out"
    return log.read_text(errors="replace").count("Accepted publickey for corraltest")


def restart_sshd() -> None:
    subprocess.run(["bash", str(REPO / "tests/rig/rig.sh"), "restart", "sshd"], check=True,
                   capture_output=True)


def test_alias_resolved_through_the_ssh_config(ssh_host):
    c = SSHConnector(ssh_host.alias, config_file=ssh_host.ssh_config)
    d = c.destination
    assert (d.hostname, d.port, d.user) == ("127.0.0.1", ssh_host.port, "corraltest")
    assert d.key_filenames == (str(ssh_host.key),)
    assert d.known_hosts == (str(ssh_host.known_hosts),)
    assert c.run(["whoami"], check=True).stdout == "corraltest\n"


def test_explicit_options_without_any_config(ssh_host, tmp_path):
    empty = tmp_path / "empty_config"
    empty.write_text("")
    c = SSHConnector(f"corraltest@127.0.0.1:{ssh_host.port}", config_file=empty,
                     key_filename=ssh_host.key, known_hosts=ssh_host.known_hosts)
    assert c.run(["whoami"], check=True).stdout == "corraltest\n"
    # explicit keyword arguments override the config, as OpenSSH's -o does
    other = SSHConnector(ssh_host.alias, config_file=ssh_host.ssh_config, user="nobody")
    assert other.destination.user == "nobody"


def test_jump_host_through_the_ssh_config(ssh_host, ssh_host2, tmp_path):
    config = tmp_path / "ssh_config"
    config.write_text(
        ssh_host.ssh_config.read_text()
        + f"\nHost jumped\n    HostName {ssh_host2.host}\n    Port {ssh_host2.port}\n"
        f"    ProxyJump {ssh_host.alias}\n    User corraltest\n"
        f"    IdentityFile {ssh_host.key}\n    UserKnownHostsFile {ssh_host.known_hosts}\n"
    )
    c = SSHConnector("jumped", config_file=config)
    seen = c.run(["sh", "-c", 'echo "$SSH_CONNECTION"'], check=True).stdout.split()
    client_ip, _, server_ip, _ = seen
    assert server_ip == ssh_host2.host  # reached the namespace host...
    assert client_ip != "127.0.0.1" and client_ip.startswith("10.")  # ...from the jump host


def test_two_jump_hosts_in_a_row(ssh_host, ssh_host2, tmp_path):
    # loopback -> namespace host -> the namespace host's sshd: the last hop connects from
    # inside the namespace (a single hop through loopback would come from 10.200.0.1)
    config = tmp_path / "ssh_config"
    config.write_text(
        ssh_host.ssh_config.read_text()
        + f"\nHost twice\n    HostName {ssh_host2.host}\n    Port {ssh_host2.port}\n"
        f"    ProxyJump {ssh_host.alias},{ssh_host2.alias}\n    User corraltest\n"
        f"    IdentityFile {ssh_host.key}\n    UserKnownHostsFile {ssh_host.known_hosts}\n"
    )
    c = SSHConnector("twice", config_file=config)
    seen = c.run(["sh", "-c", 'echo "$SSH_CONNECTION"'], check=True).stdout.split()
    assert seen[0] == ssh_host2.host


def test_unknown_host_key_refused_then_accept_new_records_it(ssh_host, rig, tmp_path):
    known = tmp_path / "known_hosts"
    known.write_text("")
    with pytest.raises(HostKeyError) as e:
        SSHConnector(ssh_host.alias, config_file=ssh_host.ssh_config, known_hosts=known).run(
            ["true"]
        )
    message = str(e.value)
    assert rig_fingerprint(rig.dir) in message
    assert str(known) in message
    assert "accept-new" in message
    accepting = SSHConnector(ssh_host.alias, config_file=ssh_host.ssh_config,
                             known_hosts=known, host_key_policy="accept-new")
    assert accepting.run(["true"]).ok
    assert f"[127.0.0.1]:{ssh_host.port} ssh-ed25519 " in known.read_text()
    close_all()
    strict = SSHConnector(ssh_host.alias, config_file=ssh_host.ssh_config, known_hosts=known)
    assert strict.run(["true"]).ok  # now known


def test_changed_host_key_is_refused_even_with_accept_new(ssh_host, rig, tmp_path):
    keyfile = tmp_path / "impostor"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keyfile)],
                   check=True)
    line = Path(f"{keyfile}.pub").read_text().split()[:2]
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{ssh_host.port} {' '.join(line)}\n")
    with pytest.raises(HostKeyError, match="CHANGED") as e:
        SSHConnector(ssh_host.alias, config_file=ssh_host.ssh_config, known_hosts=known,
                     host_key_policy="accept-new").run(["true"])
    assert rig_fingerprint(rig.dir) in str(e.value)
    assert "ssh-keygen -R" in str(e.value)


def test_wrong_key_is_an_authentication_error(ssh_host, tmp_path):
    keyfile = tmp_path / "wrong_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keyfile)],
                   check=True)
    c = SSHConnector(ssh_host.alias, config_file=ssh_host.ssh_config, key_filename=keyfile)
    with pytest.raises(AuthenticationError, match="refused the login") as e:
        c.run(["true"])
    assert isinstance(e.value.__cause__, paramiko.AuthenticationException)


def test_unreachable_host_names_host_and_port(tmp_path):
    empty = tmp_path / "c"
    empty.write_text("")
    c = SSHConnector("corraltest@127.0.0.1:1", config_file=empty)
    with pytest.raises(ConnectorError, match=r"cannot connect to corraltest@127\.0\.0\.1:1"):
        c.run(["true"])


def test_200_operations_through_two_connectors_make_one_connection(ssh_host, rig):
    before = accepted_logins(rig.dir)
    a = SSHConnector(ssh_host.alias, config_file=ssh_host.ssh_config)
    b = SSHConnector(ssh_host.alias, config_file=ssh_host.ssh_config)
    base = a.run(["mktemp", "-d"], check=True).stdout.strip()
    for i in range(50):
        assert a.run(["echo", str(i)], check=True).stdout == f"{i}\n"
        b.write_text(f"{base}/f{i}", str(i))
        assert a.read_text(f"{base}/f{i}") == str(i)
        assert b.exists(f"{base}/f{i}")
    a.remove(base, recursive=True)
    assert a.connections == b.connections == 1
    time.sleep(0.2)  # sshd logs the login asynchronously
    assert accepted_logins(rig.dir) - before == 1


def test_sshd_restart_in_the_middle_of_a_series(ssh_host):
    c = SSHConnector(ssh_host.alias, config_file=ssh_host.ssh_config)
    base = c.run(["mktemp", "-d"], check=True).stdout.strip()
    for i in range(40):
        if i == 20:
            restart_sshd()  # open sessions drop: the next operation must reconnect
        c.write_text(f"{base}/f{i}", str(i))
        assert c.run(["cat", f"{base}/f{i}"], check=True).stdout == str(i)
    assert c.connections == 2
    assert sorted(c.listdir(base), key=lambda n: int(n[1:])) == [f"f{i}" for i in range(40)]
    c.remove(base, recursive=True)


def test_command_in_flight_when_the_connection_drops_raises(ssh_host):
    c = SSHConnector(ssh_host.alias, config_file=ssh_host.ssh_config)
    assert c.run(["true"]).ok
    threading.Timer(0.5, restart_sshd).start()
    started = time.monotonic()
    with pytest.raises(ConnectorError, match="lost while running sleep"):
        c.run(["sleep", "30"])
    assert time.monotonic() - started < 15
    assert c.run(["echo", "back"], check=True).stdout == "back\n"


class Gate:
    """Stands in for a link's SFTP lock: tells when an operation waits for it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.waiting = threading.Event()

    def __enter__(self) -> None:
        self.waiting.set()
        self.lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self.lock.release()


def wait_until(condition: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def drop_under_an_sftp_operation(c: SSHConnector, operation: Callable[[], object]) -> object:
    """Run ``operation`` in a thread; once it holds the SFTP session, drop the connection."""
    link = c._link
    sftp = link.sftp()
    transport = link.transport()
    gate = link.sftp_lock = Gate()
    outcome: dict[str, object] = {}

    def work() -> None:
        try:
            outcome["value"] = operation()
        except Exception as exc:
            outcome["error"] = exc

    gate.lock.acquire()
    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    assert gate.waiting.wait(10)  # past the check of the session, which is still alive
    transport.sock.shutdown(socket.SHUT_RDWR)
    wait_until(lambda: not transport.is_active() and sftp.get_channel().closed)
    gate.lock.release()
    worker.join(60)
    assert not worker.is_alive()
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]


@pytest.mark.parametrize("op", ["read_text", "get", "exists", "listdir", "write_text", "mkdir"])
def test_sftp_operation_that_finds_the_connection_dropped_reconnects_and_retries(
    ssh_host, tmp_path, op
):
    c = SSHConnector(ssh_host.alias, config_file=ssh_host.ssh_config)
    base = c.run(["mktemp", "-d"], check=True).stdout.strip()
    c.write_text(f"{base}/f", "hello")
    operations: dict[str, Callable[[], object]] = {
        "read_text": lambda: c.read_text(f"{base}/f"),
        "get": lambda: c.get(f"{base}/f", tmp_path / "got"),
        "exists": lambda: c.exists(f"{base}/f"),
        "listdir": lambda: c.listdir(base),
        "write_text": lambda: c.write_text(f"{base}/f", "new"),
        "mkdir": lambda: c.mkdir(f"{base}/d", parents=False),
    }
    value = drop_under_an_sftp_operation(c, operations[op])
    expected = {"read_text": "hello", "exists": True, "listdir": ["f"]}
    assert value == expected.get(op)
    assert c.connections == 2
    if op == "get":
        assert (tmp_path / "got").read_text() == "hello"
    if op == "write_text":
        assert c.read_text(f"{base}/f") == "new"
    if op == "mkdir":
        assert c.listdir(f"{base}/d") == []
    c.remove(base, recursive=True)


def test_an_upload_the_connection_drops_under_is_sent_again_whole(ssh_host, tmp_path):
    c = SSHConnector(ssh_host.alias, config_file=ssh_host.ssh_config)
    base = c.run(["mktemp", "-d"], check=True).stdout.strip()
    local = tmp_path / "local"
    local.write_text("data" * 10000)
    drop_under_an_sftp_operation(c, lambda: c.put(local, f"{base}/up"))
    assert c.read_text(f"{base}/up") == "data" * 10000
    assert c.listdir(base) == ["up"]  # no temporary file left
    assert c.connections == 2
    c.remove(base, recursive=True)


def test_non_idempotent_sftp_operation_raises_when_the_connection_drops(ssh_host):
    c = SSHConnector(ssh_host.alias, config_file=ssh_host.ssh_config)
    base = c.run(["mktemp", "-d"], check=True).stdout.strip()
    with pytest.raises(ConnectorError, match=rf"corraltest@127\.0\.0\.1:{ssh_host.port}") as e:
        drop_under_an_sftp_operation(c, lambda: c.mkdir(f"{base}/d", parents=False,
                                                        exist_ok=False))
    assert e.value.__cause__ is not None
    assert not isinstance(e.value.__cause__, ConnectorError)
    assert c.exists(base)  # not retried; the next operation reconnects
    assert c.connections == 2
    c.remove(base, recursive=True)


def test_sftp_operations_right_after_the_socket_is_closed(ssh_host):
    c = SSHConnector(ssh_host.alias, config_file=ssh_host.ssh_config)
    base = c.run(["mktemp", "-d"], check=True).stdout.strip()
    for i in range(6):
        c.exists(base)  # the SFTP session is open
        c._link.transport().sock.shutdown(socket.SHUT_RDWR)
        c.write_text(f"{base}/f{i}", str(i))
        assert c.read_text(f"{base}/f{i}") == str(i)
    assert c.connections == 7
    assert len(c.listdir(base)) == 6
    c.remove(base, recursive=True)


def transport_socket(c: SSHConnector) -> socket.socket:
    return c._link.transport().sock  # type: ignore[no-any-return]


def test_transport_socket_has_tcp_nodelay(ssh_host):
    c = SSHConnector(ssh_host.alias, config_file=ssh_host.ssh_config)
    sock = transport_socket(c)
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1


def test_transport_socket_has_short_dead_peer_timeouts(ssh_host):
    sock = transport_socket(SSHConnector(ssh_host.alias, config_file=ssh_host.ssh_config))
    tcp = socket.IPPROTO_TCP
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
    idle = sock.getsockopt(tcp, socket.TCP_KEEPIDLE)
    interval = sock.getsockopt(tcp, socket.TCP_KEEPINTVL)
    count = sock.getsockopt(tcp, socket.TCP_KEEPCNT)
    user_timeout = sock.getsockopt(tcp, socket.TCP_USER_TIMEOUT) / 1000
    assert (idle, interval, count, user_timeout) == (
        ssh_transport.KEEPALIVE_IDLE,
        ssh_transport.KEEPALIVE_INTERVAL,
        ssh_transport.KEEPALIVE_COUNT,
        ssh_transport.DEAD_PEER_TIMEOUT,
    )
    assert idle + interval * count <= 40 and 10 <= user_timeout <= 40


def netns_interface(netns: str) -> str:
    """The namespace's veth end (its one interface besides lo)."""
    out = subprocess.run(["ip", "-n", netns, "-o", "link"], capture_output=True, text=True,
                         check=True).stdout
    names = [line.split(":")[1].strip().split("@")[0] for line in out.splitlines()]
    (veth,) = [n for n in names if n != "lo"]
    return veth


def run_through_a_silent_drop(host: SSHHost, netns: str | None) -> float:
    """Seconds until a running command fails once the host's network drops every packet."""
    assert netns is not None
    link = ["ip", "-n", netns, "link", "set", netns_interface(netns)]
    c = SSHConnector(host.alias, config_file=host.ssh_config)
    assert c.run(["true"]).ok
    # link down inside the namespace: packets vanish, no FIN, no RST
    cut = threading.Timer(1.0, subprocess.run, [[*link, "down"]], {"check": True})
    started = time.monotonic()
    try:
        cut.start()
        with pytest.raises(ConnectorError, match="lost while running sleep"):
            c.run(["sleep", "60"], timeout=55)
        elapsed = time.monotonic() - started - 1.0
    finally:
        cut.cancel()
        cut.join()
        subprocess.run([*link, "up"], check=True)
    assert c.run(["echo", "back"], check=True).stdout == "back\n"
    assert c.connections == 2
    return elapsed


def test_silently_dropped_network_fails_a_running_command(ssh_host2, rig, monkeypatch):
    # Short timeouts keep the second host's network down for a few seconds only (the rig is
    # shared); the next test checks the defaults.
    monkeypatch.setattr(ssh_transport, "KEEPALIVE_IDLE", 1)
    monkeypatch.setattr(ssh_transport, "KEEPALIVE_INTERVAL", 1)
    monkeypatch.setattr(ssh_transport, "KEEPALIVE_COUNT", 2)
    monkeypatch.setattr(ssh_transport, "DEAD_PEER_TIMEOUT", 3)
    assert run_through_a_silent_drop(ssh_host2, rig.netns) < 10


@pytest.mark.slow
def test_silently_dropped_network_fails_a_running_command_in_about_30_s(ssh_host2, rig):
    assert run_through_a_silent_drop(ssh_host2, rig.netns) < 45


def test_login_shell_sees_the_profile(ssh_host):
    plain = SSHConnector(ssh_host.alias, config_file=ssh_host.ssh_config)
    plain.write_text(".bash_profile", "export CORRAL_PROFILE_VAR=from-profile\n")
    try:
        probe = ["sh", "-c", 'echo "${CORRAL_PROFILE_VAR:-unset}"']
        assert plain.run(probe, check=True).stdout == "unset\n"
        login = SSHConnector(ssh_host.alias, config_file=ssh_host.ssh_config, login_shell=True)
        assert login.run(probe, check=True).stdout == "from-profile\n"
    finally:
        plain.remove(".bash_profile")


def test_registered_as_ssh(corral_plugins):
    assert corral_plugins.connectors.get("ssh") is SSHConnector
