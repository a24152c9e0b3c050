"""The connection holder: one process per destination that logs in once and serves the
connection to every corral process of the user (see :mod:`corral.connectors.ssh_share`).

Run as ``python -m corral.connectors.ssh_holder`` by the first process that needs it: its
spec comes on stdin, the login's questions go back on stdout, then it serves on its socket
until idle for ``persist`` seconds or told to close.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import socket
import struct
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

from corral.connectors.ssh_auth import Prompter, open_shared_hint
from corral.connectors.ssh_config import Destination
from corral.connectors.ssh_share import read_frame, send_frame
from corral.errors import AuthenticationError, ConnectorError, HostKeyError, LoginNeeded

SESSION_WAIT = 120.0
"""Seconds a client's command may wait for a session when the host allows no more at once."""
SFTP_IDLE = 1.0
"""Seconds after which an idle client's SFTP session makes room for a waiting client."""

# --- the holder --------------------------------------------------------------------------------


class _DialogPrompter:
    """The holder's prompter while it starts: the questions go to the process that started it."""

    def __init__(self, to_client: IO[bytes], from_client: IO[bytes]) -> None:
        self.to_client = to_client
        self.from_client = from_client

    def __call__(self, title: str, instructions: str, prompts: Any) -> list[str]:
        question = {
            "title": title,
            "instructions": instructions,
            "prompts": [{"text": p.text, "echo": p.echo} for p in prompts],
        }
        self.to_client.write(json.dumps(question).encode() + b"\n")
        self.to_client.flush()
        answer = json.loads(self.from_client.readline() or "{}")
        if "answers" not in answer:
            raise LoginNeeded(answer.get("refused", "the login was not answered"), alias="")
        return [str(a) for a in answer["answers"]]


class Holder:
    """Holds a destination's connection and serves it on a Unix socket (see the module)."""

    def __init__(self, spec: dict[str, Any], prompter: Prompter) -> None:
        from corral.connectors.ssh_transport import _Link

        fields = dict(spec["dest"])
        for name in ("known_hosts", "key_filenames", "auth_methods"):  # JSON gave lists
            fields[name] = tuple(fields[name])
        self.dest = Destination(**fields)
        self.persist = float(spec["persist"])
        self.path = Path(spec["socket"])
        self.link = _Link(self.dest, spec["policy"], float(spec["timeout"]), prompter)
        self.clients = 0
        self.last = time.monotonic()
        self.started = time.time()
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.crowded_until = 0.0

    def open(self) -> None:
        """Connect and log in (the questions go to the starter), then stop asking anyone,
        and listen on the socket (before the starter is told: it dials right after)."""
        self.link.transport()  # later logins ask nobody: one that needs a person ends us
        asked = self.path.with_suffix(".asked")
        if self.link.asked:  # processes that lose us then know not to start a login
            asked.touch(mode=0o600)
        else:
            with contextlib.suppress(FileNotFoundError):
                asked.unlink()
        old = os.umask(0o077)
        try:
            tmp = self.path.with_name(f".{os.getpid()}")  # short: socket paths are limited
            self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.server.bind(str(tmp))
            self.server.listen(64)  # before it has its name: a client never finds it deaf
            self.inode = os.stat(tmp).st_ino
            os.replace(tmp, self.path)
        finally:
            os.umask(old)
        self.server.settimeout(1.0)

    def serve(self) -> None:
        """Accept clients until idle for ``persist`` seconds or told to close."""
        server = self.server
        with server:
            while not self.stopping.is_set():
                with self.lock:  # looked at on every turn: status requests come often
                    if self.clients == 0 and time.monotonic() - self.last > self.persist:
                        break
                try:
                    conn, _ = server.accept()
                except TimeoutError:
                    continue
                if not _same_user(conn):
                    conn.close()
                    continue
                threading.Thread(target=self._client, args=(conn,), daemon=True).start()
        with contextlib.suppress(FileNotFoundError):
            if os.stat(self.path).st_ino == self.inode:  # still ours, not a successor's
                self.path.unlink()
        self.link.close()

    def _client(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError, EOFError, ValueError):  # a client that left
            request = json.loads(_read_line(conn) or b"{}")
            op = request.get("op")
            if op == "status":  # asking is no use of the connection: it does not keep us
                conn.sendall(json.dumps(self._status()).encode() + b"\n")
            elif op == "close":
                self.stopping.set()
                conn.sendall(b"ok\n")
            elif op in ("exec", "sftp"):
                with self.lock:
                    self.clients += 1
                try:
                    if op == "exec":
                        self._exec(conn, request)
                    else:
                        self._sftp(conn)
                finally:
                    with self.lock:
                        self.clients -= 1
                        self.last = time.monotonic()

    def _status(self) -> dict[str, Any]:
        with self.lock:
            idle = 0.0 if self.clients else time.monotonic() - self.last
        return {
            "destination": str(self.dest),
            "alias": self.dest.alias,
            "pid": os.getpid(),
            "since": self.started,
            "connects": self.link.connects,
            "clients": self.clients,
            "persist": self.persist,
            "idle": idle,
        }

    def _crowded(self) -> None:
        with self.lock:
            self.crowded_until = time.monotonic() + 2 * SFTP_IDLE

    def crowded(self) -> bool:
        """Whether a client waits for a session the host does not allow yet (MaxSessions)."""
        with self.lock:
            return time.monotonic() < self.crowded_until

    def _channel(self, conn: socket.socket, start: Any) -> Any:
        from corral.connectors.ssh_transport import ConnectionLost

        try:
            return self.link.open_session(start, SESSION_WAIT, crowded=self._crowded)
        except ConnectionLost as exc:
            send_frame(conn, b"L", str(exc).encode())
        except LoginNeeded as exc:
            send_frame(conn, b"A", _needs_open(self.dest, exc).encode())
            self.stopping.set()  # nobody can log in again: leave, so that `open` starts anew
        except HostKeyError as exc:
            send_frame(conn, b"H", str(exc).encode())
        except AuthenticationError as exc:
            send_frame(conn, b"U", str(exc).encode())
        except ConnectorError as exc:
            _log(f"a session could not start: {exc!r} (cause: {exc.__cause__!r})")
            send_frame(conn, b"N", str(exc).encode())
        return None

    def _exec(self, conn: socket.socket, request: dict[str, Any]) -> None:
        from corral.connectors.ssh_transport import LINK_ERRORS

        command = request["command"]
        channel = self._channel(conn, lambda c: c.exec_command(command))
        if channel is None:
            return
        with channel:
            try:
                if request.get("stdin"):  # without, the command reads /dev/null: no EOF
                    threading.Thread(target=_feed, args=(conn, channel), daemon=True).start()
                while True:
                    if channel.recv_ready():
                        send_frame(conn, b"O", channel.recv(65536))
                    elif channel.recv_stderr_ready():
                        send_frame(conn, b"R", channel.recv_stderr(65536))
                    elif channel.exit_status_ready() and (channel.eof_received or channel.closed):
                        code = channel.recv_exit_status()
                        transport = channel.get_transport()
                        if code == -1 and (transport is None or not transport.is_active()):
                            send_frame(conn, b"L", f"connection to {self.dest} lost".encode())
                        else:
                            send_frame(conn, b"X", struct.pack(">i", code))
                        return
                    else:
                        transport = channel.get_transport()
                        if transport is None or not transport.is_active():
                            send_frame(conn, b"L", f"connection to {self.dest} lost".encode())
                            return
                        watched = [channel] if request.get("stdin") else [channel, conn]
                        ready, _, _ = select.select(watched, [], [], 1.0)
                        if conn in ready and not conn.recv(1, socket.MSG_PEEK):
                            return  # the client left (a stream it closed)
            except LINK_ERRORS as exc:
                with contextlib.suppress(OSError):
                    send_frame(conn, b"L", f"connection to {self.dest} lost: {exc}".encode())

    def _sftp(self, conn: socket.socket) -> None:
        channel = self._channel(conn, lambda c: c.invoke_subsystem("sftp"))
        if channel is None:
            return
        with channel:
            send_frame(conn, b"K")
            self._relay(conn, channel)

    def _relay(self, conn: socket.socket, channel: Any) -> None:
        """Bytes both ways between a client and its SFTP channel, until either side closes,
        or, when another client waits for a session, until it was idle for SFTP_IDLE s (the
        client opens another when it needs one)."""
        last = time.monotonic()
        while True:
            ready, _, _ = select.select([conn, channel], [], [], SFTP_IDLE / 2)
            if conn in ready:
                data = conn.recv(65536)
                if not data:
                    return
                channel.sendall(data)
                last = time.monotonic()
            if channel in ready:
                data = channel.recv(65536)
                if not data:
                    return
                conn.sendall(data)
                last = time.monotonic()
            transport = channel.get_transport()
            if transport is None or not transport.is_active():
                return
            if not ready and time.monotonic() - last > SFTP_IDLE and self.crowded():
                return


def _log(message: str) -> None:
    """A line of the holder's log (its stderr: the ``.log`` file beside its socket)."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    with contextlib.suppress(OSError):
        sys.stderr.write(f"{stamp} holder {os.getpid()}: {message}\n")
        sys.stderr.flush()


def _read_line(conn: socket.socket, limit: int = 1 << 20) -> bytes:
    """One request line, read byte by byte: what follows it (frames) stays in the socket."""
    line = bytearray()
    while len(line) < limit:
        byte = conn.recv(1)
        if not byte or byte == b"\n":
            break
        line += byte
    return bytes(line)


def _needs_open(dest: Destination, exc: LoginNeeded) -> str:
    return (
        f"the shared connection to {dest} dropped and logging in again needs a person: "
        f"{open_shared_hint(dest.alias)}"
    )


def _feed(conn: socket.socket, channel: Any) -> None:
    """The client's stdin frames, to the channel, then its end."""
    with contextlib.suppress(OSError, EOFError):
        while True:
            kind, data = read_frame(conn)
            if kind != b"I":
                break
            channel.sendall(data)
    with contextlib.suppress(OSError, EOFError):
        channel.shutdown_write()


def _same_user(conn: socket.socket) -> bool:
    """Whether the peer of a Unix connection runs as this user (SO_PEERCRED)."""
    try:
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return False
    _, uid, _ = struct.unpack("3i", creds)
    return bool(uid == os.getuid())


def main() -> int:
    """The holder: read its spec, log in (asking the starter), serve, leave when idle."""
    if os.fork():  # the starter waits for this first process; the holder is its child
        os._exit(0)
    to_client, from_client = sys.stdout.buffer, sys.stdin.buffer
    spec = json.loads(from_client.readline() or b"{}")
    holder = Holder(spec, _DialogPrompter(to_client, from_client))
    try:
        holder.open()
    except LoginNeeded as exc:
        _answer(to_client, {"error": str(exc), "kind": "A"})
        return 1
    except HostKeyError as exc:
        _answer(to_client, {"error": str(exc), "kind": "H"})
        return 1
    except AuthenticationError as exc:
        _answer(to_client, {"error": str(exc), "kind": "U"})
        return 1
    except ConnectorError as exc:
        _answer(to_client, {"error": str(exc), "kind": "N"})
        return 1
    except Exception as exc:  # a defect: the starter says so in one line, the log has it all
        import traceback

        _log(f"logging in failed:\n{traceback.format_exc()}")
        log = holder.path.with_suffix(".log")
        _answer(to_client, {"error": f"the connection holder of {holder.dest} failed while "
                            f"logging in: {exc!r} (details in {log})", "kind": "N"})
        return 1
    _answer(to_client, {"ready": True})
    devnull = os.open(os.devnull, os.O_RDWR)  # the starter may leave: let go of its pipes
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    holder.serve()
    return 0


def _answer(out: IO[bytes], message: dict[str, Any]) -> None:
    with contextlib.suppress(OSError):
        out.write(json.dumps(message).encode() + b"\n")
        out.flush()


if __name__ == "__main__":
    sys.exit(main())
