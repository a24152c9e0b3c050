"""One paramiko connection (and SFTP session) per destination, in this process: a ``_Link``.

Every connector of the process that points at the same destination shares one link: one TCP
connection and one login per host for a whole run. (Across processes, the links of the
connection holder are shared the same way: :mod:`corral.connectors.ssh_share`.) The socket
has ``TCP_NODELAY`` (without it each command stalls ~40 ms on Nagle and delayed ACKs) and
short TCP keepalive and user timeouts, so a peer that vanishes without a FIN or RST fails the
connection in about 30 s. Host keys are verified against known_hosts; the login is
:func:`corral.connectors.ssh_auth.authenticate`'s. After a dropped connection the next
operation reconnects with bounded backoff.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import os
import select
import shlex
import socket
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paramiko

from corral.connectors.ssh_auth import (
    AGAIN,
    NoPrompter,
    Prompter,
    authenticate,
    open_shared_hint,
    terminal_or_none,
)
from corral.connectors.ssh_config import Destination, resolve, unknown_alias_hint
from corral.errors import AuthenticationError, ConnectorError, HostKeyError, LoginNeeded

CHUNK = 65536

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
LIMIT_MEMORY = 60.0
"""Seconds a learned limit of sessions at once (sshd's MaxSessions) is kept."""


def _not_a_refusal(record: logging.LogRecord) -> bool:
    """paramiko logs each session the host refused (MaxSessions); corral waits for room
    and says so itself when it must: keep those lines off the user's terminal."""
    return "open FAILED" not in record.getMessage()


logging.getLogger("paramiko.transport").addFilter(_not_a_refusal)

_LINK_ERRORS = (OSError, EOFError, paramiko.SSHException)
LINK_ERRORS = _LINK_ERRORS
"""What a dropped connection raises from paramiko's calls."""


class ChannelRefused(ConnectorError):
    """The host refused one more session on a live connection (its ``MaxSessions``)."""


class ConnectionLost(ConnectorError):
    """The connection dropped while a command ran: its outcome is unknown."""


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's ``SHA256:...`` fingerprint of a host key."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def _known_name(dest: Destination) -> str:
    return dest.hostname if dest.port == 22 else f"[{dest.hostname}]:{dest.port}"


def check_host_key(dest: Destination, policy: str, key: paramiko.PKey) -> None:
    """Accept the server's ``key`` only if known_hosts has it (or, with ``accept-new``, record
    a key never seen); a key that changed is always refused."""
    where = f"{dest} (ssh alias {dest.alias!r})" if dest.alias != dest.hostname else str(dest)
    name = _known_name(dest)
    known = paramiko.HostKeys()
    files = [*dest.known_hosts, "/etc/ssh/ssh_known_hosts"]
    for file in files:
        if os.path.exists(file):
            try:
                known.load(file)
            except (OSError, paramiko.SSHException) as exc:
                raise HostKeyError(f"cannot read known_hosts file {file}: {exc}") from exc
    entry = known.lookup(name)
    file = dest.known_hosts[0] if dest.known_hosts else "~/.ssh/known_hosts"
    if entry is not None and key.get_name() in entry:
        expected = entry[key.get_name()]
        if expected != key:
            raise HostKeyError(
                f"host key for {where} CHANGED: got {key.get_name()} {fingerprint(key)}, "
                f"expected {fingerprint(expected)}; if the change is expected, remove the old "
                f"entry from {file} (ssh-keygen -R {shlex.quote(name)} -f {shlex.quote(file)})"
            )
        return
    if policy != "accept-new":
        raise HostKeyError(
            f"unknown host key for {name} ({key.get_name()} {fingerprint(key)}); "
            f"check it, then add it to {file} (or use host_key_policy='accept-new')"
        )
    path = Path(file)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(f"{name} {key.get_name()} {key.get_base64()}\n")


class _Link:
    """The one transport (and SFTP session) of a destination in this process.

    :param prompter: asks what the first login needs (default: the terminal, if any); a
        later login (after a dropped connection) asks nobody: it either needs no person (a
        key, the agent) or is a :class:`~corral.errors.LoginNeeded`.
    """

    def __init__(
        self, dest: Destination, policy: str, timeout: float, prompter: Prompter | None = None
    ) -> None:
        self.dest = dest
        self.policy = policy
        self.timeout = timeout
        self.prompter = prompter if prompter is not None else terminal_or_none(dest)
        self.lock = threading.RLock()
        self.sftp_lock = threading.Lock()
        self._transport: paramiko.Transport | None = None
        self._sftp: paramiko.SFTPClient | None = None
        self.connects = 0
        self.operations = 0  # commands and SFTP requests sent through this link
        self.jump: _Link | None = None
        self.open_lock = threading.Lock()
        self._sessions: weakref.WeakSet[paramiko.Channel] = weakref.WeakSet()
        self._limit: int | None = None  # sessions the host allows at once, once refused
        self._limit_since = 0.0
        self.keys: dict[str, paramiko.PKey] = {}  # decrypted with a passphrase asked once
        self.asked = False  # whether the host asked a person to log in (a code, a password)

    def transport(self) -> paramiko.Transport:
        """The live transport, connecting (or reconnecting, with backoff) as needed."""
        with self.lock:
            if self._transport is not None:
                if self._transport.is_active():
                    return self._transport
                self._drop()
            if self.connects and self.asked:
                # Logging in again would ask (or push to) a person: never while polling.
                raise LoginNeeded(
                    f"the connection to {self.dest} dropped and logging in again needs a "
                    "person, whom corral does not ask while it works: start again at a "
                    f"terminal (with a shared connection, persist > 0, "
                    f"{open_shared_hint(self.dest.alias)})",
                    alias=self.dest.alias,
                    dropped=True,
                )
            delays = RECONNECT_DELAYS if self.connects else FIRST_CONNECT_DELAYS
            last: Exception | None = None
            for delay in delays:
                time.sleep(delay)
                try:
                    self._transport = self._connect()
                except ConnectorError as exc:
                    if isinstance(exc, AuthenticationError | HostKeyError):
                        raise
                    last = exc
                    continue
                self.connects += 1
                self.prompter = NoPrompter(self.dest, AGAIN)
                return self._transport
            assert last is not None
            raise last

    def _connect(self) -> paramiko.Transport:
        dest = self.dest
        where = f"{dest} (ssh alias {dest.alias!r})" if dest.alias != dest.hostname else str(dest)
        try:
            sock = self._socket()
        except socket.gaierror as exc:  # the name does not resolve: a mistyped alias?
            hint = unknown_alias_hint(dest) if exc.errno == socket.EAI_NONAME else ""
            raise ConnectorError(f"cannot connect to {where}: {exc}{hint}") from exc
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise ConnectorError(f"cannot connect to {where}: {exc}") from exc
        transport = paramiko.Transport(sock)
        transport.banner_timeout = self.timeout
        transport.handshake_timeout = self.timeout
        transport.auth_timeout = self.timeout
        try:
            transport.start_client(timeout=self.timeout)
            check_host_key(dest, self.policy, transport.get_remote_server_key())
            self.asked = authenticate(transport, dest, self.prompter, self.keys) or self.asked
        except (AuthenticationError, HostKeyError):
            transport.close()
            raise
        except (OSError, EOFError, paramiko.SSHException) as exc:
            transport.close()
            raise ConnectorError(f"cannot connect to {where}: {exc}") from exc
        transport.set_keepalive(KEEPALIVE)
        return transport

    def _socket(self) -> Any:
        dest = self.dest
        if dest.proxy_jump:
            # "j1,j2": the target is reached from j2, and j2 from j1 (as OpenSSH does).
            *before, last = [hop.strip() for hop in dest.proxy_jump.split(",")]
            jump_dest = resolve(last, config_file=dest.config_file)
            if before:
                jump_dest = jump_dest._replace(proxy_jump=",".join(before))
            self.jump = _link_for(jump_dest, self.policy, self.timeout, self.prompter)
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

    # --- commands ---------------------------------------------------------------------------

    def open_session(
        self,
        start: Callable[[paramiko.Channel], object],
        wait: float | None = None,
        *,
        what: str = "a session",
        counted: bool = True,
        crowded: Callable[[], None] | None = None,
    ) -> paramiko.Channel:
        """A new session channel on which ``start`` (``exec_command``, ``invoke_subsystem``)
        succeeded; once more after a reconnect when the connection was found dead first.

        :param wait: seconds to wait for room when the host refuses one more session on the
            connection (sshd's ``MaxSessions``, 10 by default; default: ``timeout``).
        :param crowded: called on each such refusal (the holder then closes idle sessions).
        :raises ChannelRefused: no room came within ``wait``.
        :raises ConnectionLost: the connection dropped under ``start`` (what it started may
            have begun).
        """
        wait = self.timeout if wait is None else wait
        deadline = time.monotonic() + wait
        delay = 0.05
        attempt = 1
        while True:
            transport = self.transport()
            self._wait_for_room(deadline, crowded)
            session: paramiko.Channel | None = None
            try:
                with self.open_lock:  # one at a time: see _wait_for_room
                    session = transport.open_session(timeout=self.timeout)
                start(session)
                self.operations += counted
                self._sessions.add(session)
                return session
            except _LINK_ERRORS as exc:
                refusal: Exception = exc
                if not transport.is_active():
                    if session is not None:  # what ``start`` sent may have begun
                        raise ConnectionLost(
                            f"connection to {self.dest} lost while starting {what}: {exc}"
                        ) from exc
                    self.close()  # found dead: nothing was sent, reconnect
                    if attempt == 2:
                        raise ConnectorError(
                            f"cannot open a session on {self.dest}: {exc}"
                        ) from exc
                    attempt += 1
                    continue
                if session is not None:
                    session.close()
            # Refused on a live connection: it has as many sessions as the host allows.
            with self.open_lock:
                self._limit = max(1, self._live())
                self._limit_since = time.monotonic()
            if crowded is not None:
                crowded()
            if time.monotonic() + delay > deadline:
                raise ChannelRefused(
                    f"{self.dest} refuses one more session on the connection ({refusal}): it "
                    "allows a number of them at once (sshd's MaxSessions, 10 by default), "
                    f"and they stayed busy for {wait:g} s"
                ) from refusal
            time.sleep(delay)
            delay = min(delay * 2, 1.0)

    def _live(self) -> int:
        return sum(not channel.closed for channel in list(self._sessions))

    def _wait_for_room(self, deadline: float, crowded: Callable[[], None] | None) -> None:
        """Wait while the sessions open are as many as the host was seen to allow: a refused
        open is not only slow, paramiko can pair a refusal with the wrong one of several
        concurrent opens, and sshd then drops the whole connection. The limit learned is
        forgotten after LIMIT_MEMORY s, in case it was learned low."""
        while True:
            with self.open_lock:
                if self._limit is not None and time.monotonic() - self._limit_since > LIMIT_MEMORY:
                    self._limit = None
                if self._limit is None or self._live() < self._limit:
                    return
            if time.monotonic() > deadline:
                return  # the open is tried, and its refusal reported
            if crowded is not None:
                crowded()
            time.sleep(0.02)

    def execute(
        self, command: str, stdin: bytes | None, timeout: float | None, what: str
    ) -> tuple[int, bytes, bytes]:
        """Run the shell ``command``; its exit code, stdout and stderr.

        :raises ConnectionLost: the connection dropped while it ran (its fate is unknown).
        """
        channel = self.open_session(lambda c: c.exec_command(command), what=what)
        try:
            if stdin is not None:  # a command without input reads /dev/null: no EOF to send
                channel.sendall(stdin)
                channel.shutdown_write()
            out, err = self._collect(channel, timeout, what)
            code = channel.recv_exit_status()
            transport = channel.get_transport()
            if code == -1 and (transport is None or not transport.is_active()):
                # No exit status and no connection: the command's fate is unknown.
                raise ConnectionLost(f"connection to {self.dest} lost while running {what}")
        except _LINK_ERRORS as exc:
            raise ConnectionLost(
                f"connection to {self.dest} lost while running {what}: {exc}"
            ) from exc
        finally:
            channel.close()
        return code, out, err

    def _collect(
        self, channel: paramiko.Channel, timeout: float | None, what: str
    ) -> tuple[bytes, bytes]:
        out, err = bytearray(), bytearray()
        deadline = None if timeout is None else time.monotonic() + timeout
        transport = channel.get_transport()
        while True:
            while channel.recv_ready():
                out += channel.recv(CHUNK)
            while channel.recv_stderr_ready():
                err += channel.recv_stderr(CHUNK)
            if (
                channel.exit_status_ready()
                and not channel.recv_ready()
                and not (channel.recv_stderr_ready())
            ) and (channel.eof_received or channel.closed):
                break
            if transport is None or not transport.is_active():
                raise ConnectionLost(f"connection to {self.dest} lost while running {what}")
            wait = 1.0
            if deadline is not None:
                wait = deadline - time.monotonic()
                if wait <= 0:
                    raise ConnectorError(f"{what} on {self.dest} timed out after {timeout} s")
                wait = min(wait, 1.0)
            select.select([channel], [], [], wait)
        return bytes(out), bytes(err)

    def stream(self, command: str, what: str) -> Iterator[bytes]:
        """Run ``command``; yield its standard output as it arrives (closing stops it)."""
        try:
            channel = self.open_session(lambda c: c.exec_command(command), what=what)
        except ConnectionLost as exc:
            raise ConnectorError(str(exc)) from exc
        try:
            while True:
                if channel.recv_ready():
                    yield channel.recv(CHUNK)
                    continue
                if channel.exit_status_ready() and not channel.recv_ready():
                    return
                select.select([channel], [], [], 1.0)
        except _LINK_ERRORS as exc:
            raise ConnectorError(f"connection to {self.dest} lost: {exc}") from exc
        finally:
            channel.close()

    # --- files ------------------------------------------------------------------------------

    def sftp(self) -> paramiko.SFTPClient:
        """The shared SFTP session, opened (reconnecting as needed) when there is none."""
        with self.lock:
            for attempt in (1, 2):
                self.transport()
                if self._sftp is not None and not sftp_lost(self._sftp):
                    return self._sftp
                self._close_sftp()
                try:
                    channel = self.open_session(
                        lambda c: c.invoke_subsystem("sftp"), what="SFTP", counted=False
                    )
                    self._sftp = paramiko.SFTPClient(channel)
                    return self._sftp
                except (*_LINK_ERRORS, ConnectionLost) as exc:
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
        if self._transport is not None:
            with contextlib.suppress(*_LINK_ERRORS):
                self._transport.close()
            self._transport = None

    kind = "own"

    def open(self) -> bool:
        """Connect now (asking what the login needs); whether it was not connected yet."""
        with self.lock:
            fresh = self._transport is None or not self._transport.is_active()
            self.transport()
            return fresh

    def shut(self) -> bool:
        """Close the connection; whether it was open."""
        with self.lock:
            was = self._transport is not None and self._transport.is_active()
        self.close()
        return was

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


def _link_for(
    dest: Destination, policy: str, timeout: float, prompter: Prompter | None = None
) -> _Link:
    key = (*dest.key, dest.known_hosts, policy)  # same destination, same trust: one link
    with _POOL_LOCK:
        link = _POOL.get(key)
        if link is None:
            link = _POOL[key] = _Link(dest, policy, timeout, prompter)
        return link


def close_all() -> None:
    """Close every pooled SSH connection of this process."""
    with _POOL_LOCK:
        links = list(_POOL.values())
        _POOL.clear()
    for link in links:
        link.close()
