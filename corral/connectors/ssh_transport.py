"""The shared SSH transports: one paramiko connection (and SFTP session) per destination.

Every connector of the process that points at the same destination shares one ``_Link``:
one TCP connection and one handshake per host for a whole run. The socket has
``TCP_NODELAY`` (without it each command stalls ~40 ms on Nagle and delayed ACKs) and short
TCP keepalive and user timeouts, so a peer that vanishes without a FIN or RST fails the
connection in about 30 s. Host keys are verified against known_hosts. After a dropped
connection the next operation reconnects with bounded backoff.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import shlex
import socket
import threading
import time
from pathlib import Path
from typing import Any

import paramiko

from corral.connectors.ssh_config import Destination, resolve
from corral.errors import AuthenticationError, ConnectorError, HostKeyError

FIRST_CONNECT_DELAYS = (0.0, 0.5)
RECONNECT_DELAYS = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)

# Dead peer detection. Without it a network that silently drops packets (no FIN, no RST)
# hangs a command or a transfer for ~15 min (tcp_retries2) or, when idle, 2 h before the first
# keepalive probe. Short enough to give up on a dead host quickly, long enough to ride out a
# brief outage of a live one. Read when a connection is made.
KEEPALIVE_IDLE = 10  # s of silence before the first TCP keepalive probe
KEEPALIVE_INTERVAL = 5  # s between probes
KEEPALIVE_COUNT = 4  # unanswered probes: an idle connection fails after 10 + 4 * 5 = 30 s
DEAD_PEER_TIMEOUT = 30  # s sent data may stay unacknowledged (TCP_USER_TIMEOUT)
# s between SSH keepalive messages. Longer than the probes take to fail a connection: once one
# is sent to a vanished peer the probes stop (data is unacknowledged) and the kernel waits
# DEAD_PEER_TIMEOUT from then; at 30 s a dead idle connection would take a minute to fail.
KEEPALIVE = 60

_LINK_ERRORS = (OSError, EOFError, paramiko.SSHException)


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's ``SHA256:...`` fingerprint of a host key."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def _known_name(dest: Destination) -> str:
    return dest.hostname if dest.port == 22 else f"[{dest.hostname}]:{dest.port}"


class _HostKeyPolicy(paramiko.MissingHostKeyPolicy):
    def __init__(self, dest: Destination, policy: str) -> None:
        self.dest = dest
        self.policy = policy

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        file = self.dest.known_hosts[0] if self.dest.known_hosts else "~/.ssh/known_hosts"
        if self.policy != "accept-new":
            raise HostKeyError(
                f"unknown host key for {hostname} ({key.get_name()} {fingerprint(key)}); "
                f"check it, then add it to {file} (or use host_key_policy='accept-new')"
            )
        client.get_host_keys().add(hostname, key.get_name(), key)
        path = Path(file)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as f:
            f.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")


class _Link:
    """The one transport (and SFTP session) of a destination."""

    def __init__(self, dest: Destination, policy: str, timeout: float) -> None:
        self.dest = dest
        self.policy = policy
        self.timeout = timeout
        self.lock = threading.RLock()
        self.sftp_lock = threading.Lock()
        self.client: paramiko.SSHClient | None = None
        self._sftp: paramiko.SFTPClient | None = None
        self.connects = 0
        self.operations = 0  # commands and SFTP requests sent through this link
        self.jump: _Link | None = None

    def transport(self) -> paramiko.Transport:
        """The live transport, connecting (or reconnecting, with backoff) as needed."""
        with self.lock:
            if self.client is not None:
                t = self.client.get_transport()
                if t is not None and t.is_active():
                    return t
                self._drop()
            delays = RECONNECT_DELAYS if self.connects else FIRST_CONNECT_DELAYS
            last: Exception | None = None
            for delay in delays:
                time.sleep(delay)
                try:
                    self.client = self._connect()
                except ConnectorError as exc:
                    if isinstance(exc, AuthenticationError | HostKeyError):
                        raise
                    last = exc
                    continue
                self.connects += 1
                t = self.client.get_transport()
                assert t is not None
                return t
            assert last is not None
            raise last

    def _connect(self) -> paramiko.SSHClient:
        dest = self.dest
        where = f"{dest} (ssh alias {dest.alias!r})" if dest.alias != dest.hostname else str(dest)
        client = paramiko.SSHClient()
        for i, file in enumerate(dest.known_hosts):
            if os.path.exists(file):
                try:
                    (client.load_host_keys if i == 0 else client.load_system_host_keys)(file)
                except (OSError, paramiko.SSHException) as exc:
                    raise HostKeyError(f"cannot read known_hosts file {file}: {exc}") from exc
        if os.path.exists("/etc/ssh/ssh_known_hosts"):
            client.load_system_host_keys("/etc/ssh/ssh_known_hosts")
        client.set_missing_host_key_policy(_HostKeyPolicy(dest, self.policy))
        try:
            sock = self._socket()
            client.connect(
                dest.hostname,
                port=dest.port,
                username=dest.user,
                key_filename=list(dest.key_filenames) or None,  # type: ignore[arg-type]  # a list works
                look_for_keys=not dest.identities_only,
                allow_agent=True,
                sock=sock,
                timeout=self.timeout,
                banner_timeout=self.timeout,
                auth_timeout=self.timeout,
            )
        except HostKeyError:
            client.close()
            raise
        except paramiko.BadHostKeyException as exc:
            client.close()
            file = dest.known_hosts[0] if dest.known_hosts else "~/.ssh/known_hosts"
            raise HostKeyError(
                f"host key for {where} CHANGED: got {exc.key.get_name()} "
                f"{fingerprint(exc.key)}, expected {fingerprint(exc.expected_key)}; if the change "
                f"is expected, remove the old entry from {file} "
                f"(ssh-keygen -R {shlex.quote(_known_name(dest))} -f {shlex.quote(file)})"
            ) from exc
        except paramiko.AuthenticationException as exc:
            client.close()
            keys = ", ".join(dest.key_filenames) or "default keys and agent"
            raise AuthenticationError(f"{where} refused our credentials ({keys}): {exc}") from exc
        except (OSError, EOFError, paramiko.SSHException) as exc:
            client.close()
            raise ConnectorError(f"cannot connect to {where}: {exc}") from exc
        transport = client.get_transport()
        assert transport is not None
        transport.set_keepalive(KEEPALIVE)
        return client

    def _socket(self) -> Any:
        dest = self.dest
        if dest.proxy_jump:
            # "j1,j2": the target is reached from j2, and j2 from j1 (as OpenSSH does).
            *before, last = [hop.strip() for hop in dest.proxy_jump.split(",")]
            jump_dest = resolve(last, config_file=dest.config_file)
            if before:
                jump_dest = jump_dest._replace(proxy_jump=",".join(before))
            self.jump = _link_for(jump_dest, self.policy, self.timeout)
            try:
                return self.jump.transport().open_channel(
                    "direct-tcpip",
                    (dest.hostname, dest.port),
                    ("127.0.0.1", 0),
                    timeout=self.timeout,
                )
            except (OSError, EOFError, paramiko.SSHException) as exc:
                raise ConnectorError(
                    f"jump host {jump_dest} cannot reach {dest.hostname}:{dest.port}: {exc}"
                ) from exc
        sock = socket.create_connection((dest.hostname, dest.port), timeout=self.timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            _detect_dead_peer(sock)
        except OSError:
            sock.close()
            raise
        return sock

    def sftp(self) -> paramiko.SFTPClient:
        """The shared SFTP session, opened (reconnecting as needed) when there is none."""
        with self.lock:
            for attempt in (1, 2):
                transport = self.transport()
                if self._sftp is not None and not sftp_lost(self._sftp):
                    return self._sftp
                self._close_sftp()
                try:
                    channel = transport.open_session(timeout=self.timeout)
                    channel.invoke_subsystem("sftp")
                    self._sftp = paramiko.SFTPClient(channel)
                    return self._sftp
                except _LINK_ERRORS as exc:
                    # A connection that died unnoticed fails here first: nothing of the
                    # caller's operation was sent, so reconnecting and trying again is safe.
                    self._drop()
                    if attempt == 2:
                        raise ConnectorError(f"cannot open SFTP on {self.dest}: {exc}") from exc
            raise AssertionError("unreachable")

    def discard(self, sftp: paramiko.SFTPClient) -> None:
        """Forget ``sftp`` after it lost its connection; the next :meth:`sftp` opens another."""
        with self.lock:
            if self._sftp is sftp:
                self._close_sftp()

    def _close_sftp(self) -> None:
        if self._sftp is not None:
            with contextlib.suppress(*_LINK_ERRORS):  # the connection may be gone already
                self._sftp.close()
            self._sftp = None

    def _drop(self) -> None:
        self._close_sftp()
        if self.client is not None:
            with contextlib.suppress(*_LINK_ERRORS):
                self.client.close()
            self.client = None

    def close(self) -> None:
        """Close the transport; the next operation reconnects."""
        with self.lock:
            self._drop()


def _detect_dead_peer(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    options = (
        ("TCP_KEEPIDLE", KEEPALIVE_IDLE),
        ("TCP_KEEPINTVL", KEEPALIVE_INTERVAL),
        ("TCP_KEEPCNT", KEEPALIVE_COUNT),
        ("TCP_USER_TIMEOUT", int(DEAD_PEER_TIMEOUT * 1000)),  # milliseconds
    )
    for name, value in options:
        option = getattr(socket, name, None)  # Linux has all four; other systems may not
        if option is not None:
            sock.setsockopt(socket.IPPROTO_TCP, option, value)


def sftp_lost(sftp: paramiko.SFTPClient) -> bool:
    """Whether the connection under ``sftp`` is gone (its channel closed or transport down)."""
    channel = sftp.get_channel()
    if channel is None or channel.closed:
        return True
    transport = channel.get_transport()
    return transport is None or not transport.is_active()


_POOL: dict[tuple[Any, ...], _Link] = {}
_POOL_LOCK = threading.Lock()


def _link_for(dest: Destination, policy: str, timeout: float) -> _Link:
    key = (*dest.key, dest.known_hosts, policy)  # same destination, same trust: one link
    with _POOL_LOCK:
        link = _POOL.get(key)
        if link is None:
            link = _POOL[key] = _Link(dest, policy, timeout)
        return link


def close_all() -> None:
    """Close every pooled SSH connection of this process."""
    with _POOL_LOCK:
        links = list(_POOL.values())
        _POOL.clear()
    for link in links:
        link.close()
