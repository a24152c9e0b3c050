"""``SSHConnector``: a shell and a filesystem on another host, over one shared SSH transport.

Connectors pointing at the same destination share one transport (see
:mod:`corral.connectors.ssh_transport`). Host keys are verified against known_hosts; an
unknown key is refused unless ``host_key_policy="accept-new"``. After a dropped connection the
next operation reconnects with bounded backoff. A file operation that finds the connection
dropped under it reconnects and runs once more when it is idempotent; a command in flight, or
a non-idempotent file operation (``put``), raises ConnectorError.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import shlex
import stat
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, TypeVar

from corral.connectors.base import Connector, PathLike, Result, check_env_name, not_utf8
from corral.connectors.ssh_config import HOST_KEY_POLICIES, resolve
from corral.errors import ConfigError, ConnectorError
from corral.plugins.markers import hookimpl
from corral.plugins.registry import Registry

if TYPE_CHECKING:  # paramiko is imported on first use: registering "ssh" costs nothing
    import paramiko

T = TypeVar("T")

CHUNK = 65536


def _protocol_errors() -> tuple[type[BaseException], ...]:
    import paramiko

    return (EOFError, paramiko.SSHException)


def _link_errors() -> tuple[type[BaseException], ...]:
    return (OSError, *_protocol_errors())


class _ConnectionLost(ConnectorError):
    """The connection dropped while a command ran: its outcome is unknown."""


def close_all() -> None:
    """Close every pooled SSH connection of this process."""
    transport = sys.modules.get("corral.connectors.ssh_transport")
    if transport is not None:
        transport.close_all()


def remote_command(
    argv: Sequence[str],
    *,
    cwd: PathLike | None = None,
    env: Mapping[str, str] | None = None,
    login_shell: bool = False,
) -> str:
    """The command line sent to the remote shell: every value quoted."""
    if not argv:
        raise ConfigError("empty command")
    command = " ".join(shlex.quote(str(a)) for a in argv)
    if env:
        assignments = " ".join(shlex.quote(f"{check_env_name(k)}={v}") for k, v in env.items())
        command = f"env {assignments} {command}"
    if cwd is not None:
        command = f"cd {shlex.quote(str(cwd))} && {command}"
    if login_shell:
        command = f"bash -lc {shlex.quote(command)}"
    return command


class SSHConnector(Connector):
    """Commands and files on an SSH host.

    :param host: an ``~/.ssh/config`` alias, a host name, or ``user@host:port``.
    :param user: user name (overrides the ssh config).
    :param port: port (overrides the ssh config).
    :param key_filename: private key file (overrides the config's IdentityFile).
    :param config_file: ssh config file (default ``~/.ssh/config``).
    :param known_hosts: known_hosts file (default: the config's UserKnownHostsFile, else
        ``~/.ssh/known_hosts``).
    :param host_key_policy: ``"reject"`` an unknown host key (default) or ``"accept-new"``
        (record it, as OpenSSH's ``StrictHostKeyChecking=accept-new``). A changed key is
        always refused.
    :param login_shell: run commands under ``bash -lc`` (for ``module``, conda, ``sbatch``
        set up by the profile).
    :param timeout: seconds to connect and authenticate.
    """

    name = "ssh"

    def __init__(
        self,
        host: str,
        *,
        user: str | None = None,
        port: int | None = None,
        key_filename: str | os.PathLike[str] | None = None,
        config_file: str | os.PathLike[str] | None = None,
        known_hosts: str | os.PathLike[str] | None = None,
        host_key_policy: str = "reject",
        login_shell: bool = False,
        timeout: float = 15.0,
    ) -> None:
        if host_key_policy not in HOST_KEY_POLICIES:
            raise ConfigError(
                f"host_key_policy {host_key_policy!r}; valid: {', '.join(HOST_KEY_POLICIES)}"
            )
        self.destination = resolve(
            host,
            user=user,
            port=port,
            key_filename=key_filename,
            config_file=config_file,
            known_hosts=known_hosts,
        )
        self.host = host
        self.login_shell = login_shell
        from corral.connectors.ssh_transport import _link_for

        self._link = _link_for(self.destination, host_key_policy, timeout)

    @property
    def connections(self) -> int:
        """How many times the shared transport of this destination was (re)connected."""
        return self._link.connects

    @property
    def operations(self) -> int:
        """Commands and SFTP operations sent to this destination by this process so far
        (each about one network round trip)."""
        return self._link.operations

    def describe(self) -> dict[str, str | None]:
        """The destination, and the alias and ssh config it was resolved from."""
        return {
            "connector": self.name,
            "host": str(self.destination),
            "alias": self.host,
            "config_file": self.destination.config_file,
        }

    @classmethod
    def reconnect(cls, description: Mapping[str, Any]) -> SSHConnector:
        """The connector :meth:`describe` described: its alias (else its destination) and
        ssh config file."""
        alias = description.get("alias") or description.get("host")
        if not alias:
            raise ConfigError("the job's records name no SSH host")
        config_file = description.get("config_file")
        return cls(str(alias), config_file=str(config_file) if config_file else None)

    def __repr__(self) -> str:
        return f"SSHConnector({self.host!r} -> {self.destination})"

    # --- commands ---------------------------------------------------------------------------

    def run(
        self,
        argv: Sequence[str],
        *,
        cwd: PathLike | None = None,
        env: Mapping[str, str] | None = None,
        input: str | None = None,
        timeout: float | None = None,
        check: bool = False,
    ) -> Result:
        """Run ``argv`` on the host; see :meth:`Connector.run`."""
        argv = [str(a) for a in argv]
        command = remote_command(argv, cwd=cwd, env=env, login_shell=self.login_shell)
        channel = self._open_session()
        try:
            channel.exec_command(command)
            if input is not None:
                channel.sendall(input.encode())
            channel.shutdown_write()
            out, err = self._collect(channel, timeout, argv)
            code = channel.recv_exit_status()
            transport = channel.get_transport()
            if code == -1 and (transport is None or not transport.is_active()):
                # No exit status and no connection: the command's fate is unknown.
                raise _ConnectionLost(
                    f"connection to {self.destination} lost while running {argv[0]}"
                )
        except _link_errors() as exc:
            raise _ConnectionLost(
                f"connection to {self.destination} lost while running {argv[0]}: {exc}"
            ) from exc
        finally:
            channel.close()
        result = Result(
            tuple(argv), code, out.decode(errors="replace"), err.decode(errors="replace")
        )
        if check and not result.ok:
            tail = result.stderr.strip().splitlines()[-1:] or [""]
            raise ConnectorError(f"{argv[0]} on {self.destination} exited with {code}: {tail[0]}")
        return result

    def _run_idempotent(self, argv: list[str]) -> None:
        """Run a command that is safe to repeat; once more if the connection dropped under it."""
        try:
            self.run(argv, check=True)
        except _ConnectionLost:
            self.run(argv, check=True)

    def _open_session(self) -> paramiko.Channel:
        for attempt in (1, 2):  # nothing was sent yet: one retry after a reconnect is safe
            transport = self._link.transport()
            try:
                session = transport.open_session(timeout=self._link.timeout)
                self._link.operations += 1
                return session
            except _link_errors() as exc:
                self._link.close()
                if attempt == 2:
                    raise ConnectorError(
                        f"cannot open a session on {self.destination}: {exc}"
                    ) from exc
        raise AssertionError("unreachable")

    def _collect(
        self, channel: paramiko.Channel, timeout: float | None, argv: list[str]
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
                raise _ConnectionLost(
                    f"connection to {self.destination} lost while running {argv[0]}"
                )
            wait = 1.0
            if deadline is not None:
                wait = deadline - time.monotonic()
                if wait <= 0:
                    raise ConnectorError(
                        f"{argv[0]} on {self.destination} timed out after {timeout} s"
                    )
                wait = min(wait, 1.0)
            select.select([channel], [], [], wait)
        return bytes(out), bytes(err)

    # --- files ------------------------------------------------------------------------------

    def _sftp(
        self,
        what: str,
        path: PathLike,
        op: Callable[[paramiko.SFTPClient], T],
        *,
        idempotent: bool = True,
    ) -> T:
        """``op`` on the shared SFTP session; once more after a reconnect if ``idempotent``."""
        from corral.connectors.ssh_transport import sftp_lost

        for attempt in (1, 2):
            sftp = self._link.sftp()
            try:
                with self._link.sftp_lock:
                    self._link.operations += 1
                    return op(sftp)
            except _link_errors() as exc:
                failed = f"{what} {path} on {self.destination}"
                # An OSError without errno is either an SFTP failure status from a live server
                # or paramiko's "Socket is closed": only the state of the session tells them apart.
                if isinstance(exc, OSError) and not (exc.errno is None and sftp_lost(sftp)):
                    reason = os.strerror(exc.errno) if exc.errno else str(exc)
                    raise ConnectorError(f"{failed}: {reason}") from exc
                self._link.discard(sftp)
                if attempt == 2 or not idempotent:
                    detail = str(exc) or type(exc).__name__
                    raise ConnectorError(f"{failed}: connection lost ({detail})") from exc
        raise AssertionError("unreachable")

    def put(self, local: PathLike, remote: PathLike) -> None:
        """Upload a local file (not retried after a dropped connection: it writes in place)."""
        self._sftp(
            "cannot upload to",
            remote,
            lambda s: s.put(str(local), str(remote)),
            idempotent=False,
        )

    def get(self, remote: PathLike, local: PathLike) -> None:
        """Download a remote file."""
        self._sftp("cannot download", remote, lambda s: s.get(str(remote), str(local)))

    def read_text(self, path: PathLike) -> str:
        """Read a remote UTF-8 text file."""

        def read(s: paramiko.SFTPClient) -> bytes:
            with s.open(str(path), "rb") as f:
                data: bytes = f.read()
                return data

        data = self._sftp("cannot read", path, read)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConnectorError(
                f"{path} on {self.destination} is not UTF-8 text ({not_utf8(exc)})"
            ) from exc

    def read_from(self, path: PathLike, offset: int = 0) -> bytes | None:
        """The bytes of a remote file from ``offset`` on; None when it does not exist."""

        def read(s: paramiko.SFTPClient) -> bytes | None:
            try:
                with s.open(str(path), "rb") as f:
                    f.seek(offset)
                    data: bytes = f.read()
                    return data
            except FileNotFoundError:
                return None

        return self._sftp("cannot read", path, read)

    def write_text(self, path: PathLike, text: str, *, mode: int = 0o644) -> None:
        """Write a remote file atomically (temporary file, then ``posix-rename``)."""
        target = PurePosixPath(str(path))
        tmp = str(target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.tmp"))

        def write(s: paramiko.SFTPClient) -> None:
            try:
                with s.open(tmp, "wb") as f:
                    f.write(text.encode("utf-8"))
                s.chmod(tmp, mode)
                s.posix_rename(tmp, str(target))
            except BaseException:
                with contextlib.suppress(OSError):
                    s.remove(tmp)
                raise

        self._sftp("cannot write", path, write)

    def mkdir(self, path: PathLike, *, parents: bool = True, exist_ok: bool = True) -> None:
        """Create a remote directory (``mkdir -p`` in one round trip with ``parents``)."""
        if parents:
            argv = ["mkdir", "-p", "--", str(path)]
            if not exist_ok and self.exists(path):
                raise ConnectorError(f"cannot create {path} on {self.destination}: exists")
            self._run_idempotent(argv)
            return

        def make(s: paramiko.SFTPClient) -> None:
            try:
                s.mkdir(str(path))
            except OSError:
                if exist_ok and stat.S_ISDIR(s.stat(str(path)).st_mode or 0):
                    return
                raise

        self._sftp("cannot create", path, make, idempotent=exist_ok)

    def exists(self, path: PathLike) -> bool:
        """Whether the remote path exists."""

        def check(s: paramiko.SFTPClient) -> bool:
            try:
                s.stat(str(path))
            except FileNotFoundError:
                return False
            except OSError as exc:
                if exc.errno == errno.ENOENT:
                    return False
                raise
            return True

        return self._sftp("cannot stat", path, check)

    def remove(self, path: PathLike, *, recursive: bool = False) -> None:
        """Remove a remote file, or a tree with ``recursive`` (missing is fine)."""
        if recursive:
            self._run_idempotent(["rm", "-rf", "--", str(path)])
            return

        def rm(s: paramiko.SFTPClient) -> None:
            with contextlib.suppress(FileNotFoundError):
                s.remove(str(path))

        self._sftp("cannot remove", path, rm)

    def listdir(self, path: PathLike) -> list[str]:
        """Sorted names in a remote directory."""
        return sorted(self._sftp("cannot list", path, lambda s: s.listdir(str(path))))

    def get_tree(self, remote: PathLike, local: PathLike) -> None:
        """Download the directory ``remote`` into ``local`` (created), recursively."""

        def walk(s: paramiko.SFTPClient, src: PurePosixPath, dst: Path) -> None:
            dst.mkdir(parents=True, exist_ok=True)
            for entry in s.listdir_attr(str(src)):
                mode = entry.st_mode or 0
                if stat.S_ISDIR(mode):
                    walk(s, src / entry.filename, dst / entry.filename)
                elif stat.S_ISREG(mode):
                    s.get(str(src / entry.filename), str(dst / entry.filename))

        self._sftp(
            "cannot download", remote, lambda s: walk(s, PurePosixPath(str(remote)), Path(local))
        )

    def stream(self, argv: Sequence[str]) -> Iterator[str]:
        """Run ``argv`` and yield its standard output as it arrives (closing stops it)."""
        command = remote_command([str(a) for a in argv], login_shell=self.login_shell)
        channel = self._open_session()
        try:
            channel.exec_command(command)
            channel.shutdown_write()
            while True:
                if channel.recv_ready():
                    yield channel.recv(CHUNK).decode(errors="replace")
                    continue
                if channel.exit_status_ready() and not channel.recv_ready():
                    return
                select.select([channel], [], [], 1.0)
        except _link_errors() as exc:
            raise ConnectorError(f"connection to {self.destination} lost: {exc}") from exc
        finally:
            channel.close()

    def close(self) -> None:
        """Close the shared connection of this destination (the next use reconnects)."""
        self._link.close()


@hookimpl
def corral_register_connectors(registry: Registry[Connector]) -> None:
    """Register the SSH connector."""
    registry.add(SSHConnector)
