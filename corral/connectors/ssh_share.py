"""One SSH connection per destination for every corral process of the user: the holder.

The first corral process that needs a destination starts a small *holder* process
(:mod:`corral.connectors.ssh_holder`), which connects and logs in: what the login asks
(a TOTP code, a password, a key's passphrase) it sends back to that process, which asks the
person at its terminal. The holder then serves every later corral process of the same user —
an experiment, ``corral jobs ls``, ``log -f``, ``check`` — over a Unix socket in a directory
only the user can enter (0700, its owner checked), and checks each peer's uid too. Each
command is a new channel on the one authenticated transport; files go over one SFTP channel
per client. The holder leaves after ``persist`` seconds without a client (like OpenSSH's
``ControlPersist``), or on ``corral ssh close``.

When its connection drops, the holder reconnects only if that needs no person (a key, the
agent); else it leaves, and processes see :class:`~corral.errors.LoginNeeded` — one line
saying to run ``corral ssh open HOST`` — instead of a new prompt: polling never logs in.

Frames on the socket, after a one-line JSON request: a type byte, a 4-byte length, the data.
``O``/``R`` stdout/stderr, ``X`` the exit code, ``L`` the connection was lost during the
command, ``N`` it could not start (safe to try again), ``A`` a login is needed,
``I``/``E`` the client's stdin and its end.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from corral.connectors.ssh_auth import Prompt, Prompter, open_shared_hint
from corral.connectors.ssh_config import Destination
from corral.connectors.ssh_control import SftpSession
from corral.errors import AuthenticationError, ConnectorError, HostKeyError, LoginNeeded

DEFAULT_PERSIST = 600.0
"""Seconds a holder stays without a client, by default (OpenSSH's ControlPersist of 10 min)."""
PERSIST_ENV = "CORRAL_SSH_PERSIST"
START_TIMEOUT = 120.0
"""Seconds a holder may take to connect and log in, prompts included."""
HEADER = struct.Struct(">cI")
NAME_LENGTH = 16
"""Hex digits of a holder's name (its socket is ``<name>.sock``)."""
SOCKET_PATH_MAX = 104
"""Bytes of a socket path that fit every Unix (sun_path holds 108 on Linux, 104 on BSDs)."""


# --- where holders live ----------------------------------------------------------------------


def runtime_dir() -> Path:
    """This user's directory of holder sockets, ``$XDG_RUNTIME_DIR/corral-ssh`` (else, or
    when that would make socket paths longer than a Unix socket allows,
    ``/tmp/corral-ssh-<uid>``): created 0700, refused if anyone else could enter it (another
    owner, group or world permissions)."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    root = Path(f"/tmp/corral-ssh-{os.getuid()}")
    if base and Path(base).is_dir():
        mine = Path(base) / "corral-ssh"
        if len(os.fsencode(mine)) + 1 + NAME_LENGTH + len(".sock") <= SOCKET_PATH_MAX:
            root = mine
    try:
        root.mkdir(mode=0o700, exist_ok=True)
        info = root.lstat()
    except OSError as exc:
        raise ConnectorError(f"cannot create the SSH socket directory {root}: {exc}") from exc
    if not root.is_dir() or root.is_symlink() or info.st_uid != os.getuid():
        raise ConnectorError(f"{root} is not a directory of this user: refusing its sockets")
    if info.st_mode & 0o077:
        raise ConnectorError(
            f"{root} can be entered by other users (mode {info.st_mode & 0o777:o}): "
            "refusing its sockets (chmod 700 it)"
        )
    return root


def identity(dest: Destination, policy: str) -> str:
    """A short name for a destination and its trust (two clients of it share one holder)."""
    key = json.dumps([*dest.key, list(dest.known_hosts), policy], sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()[:NAME_LENGTH]


def socket_path(dest: Destination, policy: str) -> Path:
    """The socket of ``dest``'s holder."""
    return runtime_dir() / f"{identity(dest, policy)}.sock"


def persist_seconds(dest: Destination, given: float | None) -> float:
    """How long a holder waits for a client: ``given``, else ``$CORRAL_SSH_PERSIST``, else
    the ssh config's ``ControlPersist``, else :data:`DEFAULT_PERSIST`; 0 turns sharing off."""
    if given is not None:
        return float(given)
    env = os.environ.get(PERSIST_ENV)
    raw, source = (env, f"${PERSIST_ENV}") if env else (dest.control_persist, "ControlPersist")
    if raw is None:
        return DEFAULT_PERSIST
    text = str(raw).strip().lower()
    if text in ("no", "false"):
        return 0.0
    if text in ("yes", "true"):
        return float("inf")
    seconds = openssh_time(text)
    if seconds is None:
        raise ConnectorError(
            f"{source} {raw!r}: expected seconds, a time like 10m or 1h30m, 'yes' or 'no'"
        )
    return seconds


def openssh_time(text: str) -> float | None:
    """Seconds in OpenSSH's time format (``600``, ``10m``, ``1h30m``, ``2d``); None if it is
    not one."""
    units = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    found = re.fullmatch(r"(?:\d+(?:\.\d+)?[smhdw]?)+", text.strip().lower())
    if not found:
        return None
    return sum(
        float(number) * units[unit]
        for number, unit in re.findall(r"(\d+(?:\.\d+)?)([smhdw]?)", text.strip().lower())
    )


def _ask_holder(path: Path, request: bytes) -> str | None:
    """One request to the holder at ``path``; its answer line, None if none listens there
    (its socket, a dead holder's, is removed)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(5)
    try:
        sock.connect(str(path))
        sock.sendall(request)
        return sock.makefile().readline()
    except (ConnectionRefusedError, FileNotFoundError):
        with contextlib.suppress(OSError):
            path.unlink()
        return None
    except OSError:
        return None
    finally:
        sock.close()


def holders() -> list[dict[str, Any]]:
    """What each holder of this user says of itself (a dead one's socket is removed)."""
    found = []
    for path in sorted(runtime_dir().glob("*.sock")):
        line = _ask_holder(path, b'{"op": "status"}\n')
        if line:
            with contextlib.suppress(ValueError):
                found.append({**json.loads(line), "socket": str(path)})
    return found


def shut_all() -> int:
    """Ask every holder of this user to leave now; how many were there."""
    return sum(
        _ask_holder(path, b'{"op": "close"}\n') is not None
        for path in sorted(runtime_dir().glob("*.sock"))
    )


# --- frames ----------------------------------------------------------------------------------


def send_frame(sock: socket.socket, kind: bytes, data: bytes = b"") -> None:
    """One frame: type, length, data."""
    sock.sendall(HEADER.pack(kind, len(data)) + data)


def _read_exactly(sock: socket.socket, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError("the SSH connection holder went away")
        data += chunk
    return bytes(data)


def read_frame(sock: socket.socket) -> tuple[bytes, bytes]:
    """The next frame's type and data."""
    kind, size = HEADER.unpack(_read_exactly(sock, HEADER.size))
    return kind, _read_exactly(sock, size) if size else b""


# --- the client's side -------------------------------------------------------------------------


class _RelaySocket:
    """A Unix socket to the holder's SFTP channel, as paramiko's SFTPClient wants one."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.closed = False

    def send(self, data: bytes) -> int:
        return self.sock.send(data)

    def recv(self, n: int) -> bytes:
        data = self.sock.recv(n)
        if not data:
            self.closed = True
        return data

    def close(self) -> None:
        self.closed = True
        with contextlib.suppress(OSError):
            self.sock.close()

    def get_name(self) -> str:
        return "shared"

    def get_transport(self) -> _RelaySocket:
        return self

    def is_active(self) -> bool:
        return not self.closed


def _hung_up(sock: socket.socket) -> bool:
    """Whether the other end closed ``sock`` (nothing is pending on an idle SFTP session)."""
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


class SharedLink(SftpSession):
    """A destination's connection, through its holder: started here if there is none.

    The first connection of a process may ask the person at its terminal (the holder relays
    the login's questions); after it, none does: a holder that could not log in again is a
    :class:`~corral.errors.LoginNeeded`, with the command that opens it.
    """

    def __init__(
        self,
        dest: Destination,
        policy: str,
        timeout: float,
        persist: float,
        prompter: Prompter | None = None,
    ) -> None:
        self.dest = dest
        self.policy = policy
        self.timeout = timeout
        self.persist = persist
        self.prompter = prompter
        self.path = socket_path(dest, policy)
        self.operations = 0
        self.sftp_lock = threading.Lock()
        self.lock = threading.RLock()
        self._sftp: Any = None
        self._started_here = False
        self._had_connection = False

    # --- reaching the holder ---------------------------------------------------------------

    def _dial(self) -> socket.socket | None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(str(self.path))
            return sock
        except (FileNotFoundError, ConnectionRefusedError):
            sock.close()
            return None
        except OSError as exc:
            sock.close()
            raise ConnectorError(f"cannot reach the connection holder {self.path}: {exc}") from exc

    def _connection(self, request: dict[str, Any]) -> socket.socket:
        """A connection to the holder carrying ``request`` (the holder started if needed)."""
        for _ in range(3):
            sock = self._dial()
            if sock is None:
                self._start()
                continue
            try:
                sock.sendall(json.dumps(request).encode() + b"\n")
            except OSError:
                sock.close()
                continue
            self._had_connection = True
            return sock
        raise ConnectorError(f"cannot reach the connection holder of {self.dest} ({self.path})")

    def _start(self) -> None:
        """Start the holder (under a lock: one per destination) and answer its questions."""
        lock_path = self.path.with_suffix(".lock")
        with open(lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            probe = self._dial()
            if probe is not None:  # another process started it meanwhile
                probe.close()
                return
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()  # a dead holder's
            if self._had_connection and self.path.with_suffix(".asked").exists():
                # its login asked a person: a new one would too (a code, a push to a phone)
                raise LoginNeeded(
                    f"the shared connection to {self.dest} is gone and its login needs a "
                    f"person: {open_shared_hint(self.dest.alias)}; meanwhile jobs keep "
                    "their state",
                    alias=self.dest.alias,
                    dropped=True,
                )
            prompter = self._prompter_now()
            log = open(self.path.with_suffix(".log"), "ab")  # noqa: SIM115
            proc = subprocess.Popen(
                [sys.executable, "-m", "corral.connectors.ssh_holder"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                start_new_session=True,  # outlives this process, ignores its terminal
                close_fds=True,
                cwd="/",
                env=_holder_env(),
            )
            log.close()
            assert proc.stdin is not None
            assert proc.stdout is not None
            spec = {
                "dest": self.dest._asdict(),
                "policy": self.policy,
                "timeout": self.timeout,
                "persist": self.persist,
                "socket": str(self.path),
            }
            try:
                _converse(proc.stdin, proc.stdout, spec, prompter, self.dest)
            finally:
                for pipe in (proc.stdin, proc.stdout):
                    with contextlib.suppress(OSError):
                        pipe.close()
                proc.wait()  # it forked the holder off at once
            self._started_here = True

    def _prompter_now(self) -> Prompter:
        if self._had_connection:  # a process that was connected never logs in again
            return _NeedsOpen(self.dest)
        if self.prompter is not None:
            return self.prompter
        from corral.connectors.ssh_auth import terminal_or_none

        return terminal_or_none(self.dest)

    @property
    def connects(self) -> int:
        """How many times the holder (re)connected to the destination."""
        return int(self.status().get("connects", 0))

    def status(self) -> dict[str, Any]:
        """What the holder says of itself (starting it if there is none)."""
        sock = self._connection({"op": "status"})
        with sock:
            data: dict[str, Any] = json.loads(sock.makefile().readline() or "{}")
        return data

    # --- commands -----------------------------------------------------------------------------

    def execute(
        self, command: str, stdin: bytes | None, timeout: float | None, what: str
    ) -> tuple[int, bytes, bytes]:
        """Run ``command`` on a new channel of the holder; exit code, stdout, stderr."""
        from corral.connectors.ssh_transport import ConnectionLost

        self.operations += 1
        sock = self._connection({"op": "exec", "command": command, "stdin": stdin is not None})
        out, err = bytearray(), bytearray()
        deadline = None if timeout is None else time.monotonic() + timeout
        with sock:
            try:
                if stdin is not None:
                    for i in range(0, len(stdin), 1 << 20):
                        send_frame(sock, b"I", stdin[i : i + (1 << 20)])
                    send_frame(sock, b"E")
                while True:
                    sock.settimeout(
                        None if deadline is None else max(0.01, deadline - time.monotonic())
                    )
                    try:
                        kind, data = read_frame(sock)
                    except TimeoutError:
                        raise ConnectorError(
                            f"{what} on {self.dest} timed out after {timeout} s"
                        ) from None
                    if kind == b"O":
                        out += data
                    elif kind == b"R":
                        err += data
                    elif kind == b"X":
                        return struct.unpack(">i", data)[0], bytes(out), bytes(err)
                    else:
                        _raise(kind, data, self.dest)
            except (OSError, EOFError) as exc:
                raise ConnectionLost(
                    f"connection to {self.dest} lost while running {what}: {exc}"
                ) from exc

    def stream(self, command: str, what: str) -> Iterator[bytes]:
        """Run ``command``; yield its standard output as it arrives (closing stops it)."""
        self.operations += 1
        sock = self._connection({"op": "exec", "command": command, "stdin": False})
        with sock:
            sock.settimeout(None)
            try:
                while True:
                    kind, data = read_frame(sock)
                    if kind == b"O":
                        yield data
                    elif kind == b"X":
                        return
                    elif kind != b"R":
                        _raise(kind, data, self.dest)
            except (OSError, EOFError) as exc:
                raise ConnectorError(f"connection to {self.dest} lost: {exc}") from exc

    # --- files --------------------------------------------------------------------------------

    def sftp(self) -> Any:
        """An SFTP session over the holder (one per process, opened when there is none)."""
        import paramiko

        with self.lock:
            if self._sftp is not None and not self._sftp.get_channel().closed:
                if not _hung_up(self._sftp.get_channel().sock):
                    return self._sftp
                self.discard(self._sftp)  # the holder closed it while idle, making room
            sock = self._connection({"op": "sftp"})
            kind, data = read_frame(sock)
            if kind != b"K":
                sock.close()
                _raise(kind, data, self.dest)
            sock.settimeout(None)
            try:
                self._sftp = paramiko.SFTPClient(_RelaySocket(sock))  # type: ignore[arg-type]
            except (OSError, EOFError, paramiko.SSHException) as exc:
                sock.close()
                raise ConnectorError(f"cannot open SFTP on {self.dest}: {exc}") from exc
            return self._sftp

    kind = "shared"

    def open(self) -> bool:
        """Reach the holder, starting it (and logging in) if there is none; whether it was
        started by this call."""
        before = self._started_here
        self.status()
        return self._started_here and not before

    def shut(self) -> bool:
        """Ask the holder to leave now (``corral ssh close``); whether one was there."""
        sock = self._dial()
        if sock is None:
            return False
        with sock:
            sock.sendall(b'{"op": "close"}\n')
            with contextlib.suppress(OSError):
                sock.recv(16)
        return True


_LINKS: dict[str, SharedLink] = {}
_LINKS_LOCK = threading.Lock()


def shared_link(dest: Destination, policy: str, timeout: float, persist: float) -> SharedLink:
    """The process's link to ``dest``'s holder (one per destination, as connections are)."""
    key = identity(dest, policy)
    with _LINKS_LOCK:
        link = _LINKS.get(key)
        if link is None:
            link = _LINKS[key] = SharedLink(dest, policy, timeout, persist)
        return link


def close_all() -> None:
    """Close this process's sessions over holders (the holders stay, for other processes)."""
    with _LINKS_LOCK:
        links = list(_LINKS.values())
        _LINKS.clear()
    for link in links:
        link.close()


class _NeedsOpen:
    """The prompter of a process that was connected already: any question is a LoginNeeded."""

    def __init__(self, dest: Destination) -> None:
        self.dest = dest

    def __call__(self, title: str, instructions: str, prompts: Any) -> list[str]:
        raise LoginNeeded(
            f"the shared connection to {self.dest} is gone and its login needs a person: "
            f"{open_shared_hint(self.dest.alias)}; meanwhile jobs keep their state",
            alias=self.dest.alias,
            dropped=True,
        )


def _holder_env() -> dict[str, str]:
    """This process's environment, with the corral it runs first on the path: the holder
    runs the same code even when that is not the installed one (a checkout, a test run)."""
    home = str(Path(__file__).resolve().parents[2])  # the folder holding corral/
    path = [home, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(path)}


def _raise(kind: bytes, data: bytes, dest: Destination, *, dropped: bool = True) -> None:
    """The error a holder's answer of ``kind`` stands for (``dropped``: a login needed was
    the holder's, after its connection dropped)."""
    from corral.connectors.ssh_transport import ConnectionLost

    message = data.decode(errors="replace")
    if kind == b"A":
        raise LoginNeeded(message, alias=dest.alias, dropped=dropped)
    if kind == b"H":
        raise HostKeyError(message)
    if kind == b"U":
        raise AuthenticationError(message)
    if kind == b"L":
        raise ConnectionLost(message)
    raise ConnectorError(message or f"the connection holder of {dest} answered {kind!r}")


def _converse(
    to_holder: IO[bytes],
    from_holder: IO[bytes],
    spec: dict[str, Any],
    prompter: Prompter,
    dest: Destination,
) -> None:
    """Give the holder its destination, answer the login's questions until it is ready."""
    to_holder.write(json.dumps(spec).encode() + b"\n")
    to_holder.flush()
    while True:
        line = from_holder.readline()
        if not line:
            raise ConnectorError(f"the connection holder of {dest} ended while logging in")
        message = json.loads(line)
        if "prompts" in message:
            prompts = [Prompt(p["text"], p["echo"]) for p in message["prompts"]]
            try:
                answers = prompter(
                    message.get("title", ""), message.get("instructions", ""), prompts
                )
            except LoginNeeded as exc:
                to_holder.write(json.dumps({"refused": str(exc)}).encode() + b"\n")
                to_holder.flush()
                raise
            to_holder.write(json.dumps({"answers": answers}).encode() + b"\n")
            to_holder.flush()
        elif message.get("ready"):
            return
        else:
            kind, error = message.get("kind", "C").encode(), message.get("error", "").encode()
            _raise(kind, error, dest, dropped=False)
