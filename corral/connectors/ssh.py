"""``SSHConnector``: a shell and a filesystem on another host, over one shared SSH connection.

Every corral process of the user reaches a destination through one connection: its holder
(:mod:`corral.connectors.ssh_share`), which logged in once — a key, the agent, a passphrase,
a password, a second factor, asked at the terminal of the process that started it — and
stays ``persist`` seconds after its last client (``persist=0``: each process connects on its
own, :mod:`corral.connectors.ssh_transport`). Where the ssh config asks for OpenSSH's own
``ControlMaster``, its master is used instead (:mod:`corral.connectors.ssh_control`). Host
keys are verified against known_hosts; an unknown key is refused unless
``host_key_policy="accept-new"``. After a dropped connection the next operation reconnects
with bounded backoff, without asking anyone (:class:`~corral.errors.LoginNeeded` when that
needs a person). A file operation that finds the connection dropped under it reconnects and
runs once more when it is idempotent; a command in flight, or a non-idempotent file
operation (``mkdir`` of a directory that must not exist), raises ConnectorError.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shlex
import stat
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, TypeVar

from corral.connectors.base import Connector, PathLike, Result, check_env_name, not_utf8
from corral.connectors.ssh_config import HOST_KEY_POLICIES, Destination, resolve
from corral.errors import ConfigError, ConnectorError
from corral.plugins.markers import hookimpl
from corral.plugins.registry import Registry

if TYPE_CHECKING:  # paramiko is imported on first use: registering "ssh" costs nothing
    import paramiko

T = TypeVar("T")

CHUNK = 65536


def _link_errors() -> tuple[type[BaseException], ...]:
    from corral.connectors.ssh_transport import LINK_ERRORS

    return LINK_ERRORS


def link_for(dest: Destination, policy: str, timeout: float, persist: float | None) -> Any:
    """The connection a connector of ``dest`` uses: OpenSSH's master where the ssh config
    asks for one, else the shared holder's, else (``persist`` 0) this process's own."""
    from corral.connectors import ssh_share
    from corral.connectors.ssh_transport import _link_for

    if dest.control_path and dest.control_master in ("yes", "auto", "ask", "autoask"):
        from corral.connectors.ssh_control import ControlLink

        return ControlLink(dest, timeout)
    seconds = ssh_share.persist_seconds(dest, persist)
    if seconds <= 0:
        return _link_for(dest, policy, timeout)
    return ssh_share.shared_link(dest, policy, timeout, seconds)


def close_all() -> None:
    """Close every SSH connection of this process (shared ones stay for other processes)."""
    for name in ("corral.connectors.ssh_transport", "corral.connectors.ssh_share"):
        module = sys.modules.get(name)
        if module is not None:
            module.close_all()


def remote_command(
    argv: Sequence[str],
    *,
    cwd: PathLike | None = None,
    env: Mapping[str, str] | None = None,
    login_shell: bool = False,
    stdin: bool = False,
) -> str:
    """The command line sent to the remote shell: every value quoted.

    :param stdin: whether input follows; without it the command reads ``/dev/null``, so
        that the client never has to send an end of input: sent after a quick command's
        end, it can reach sshd once the channel is gone, and sshd drops the whole
        connection for it.
    """
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
    return command if stdin else f"{command} </dev/null"


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
    :param timeout: seconds to connect and authenticate (prompts aside).
    :param persist: seconds the shared connection stays after its last corral process
        (default: ``$CORRAL_SSH_PERSIST``, else the ssh config's ``ControlPersist``, else 600);
        0: no sharing, this process connects (and logs in) on its own.
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
        persist: float | None = None,
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
        self._link = link_for(self.destination, host_key_policy, timeout, persist)

    @property
    def connections(self) -> int:
        """How many times the connection of this destination was (re)connected."""
        return int(self._link.connects)

    @property
    def operations(self) -> int:
        """Commands and SFTP operations sent to this destination by this process so far
        (each about one network round trip)."""
        return int(self._link.operations)

    @property
    def sharing(self) -> str:
        """How this connection is shared: ``"shared"`` (corral's holder, for every corral
        process of the user), ``"openssh"`` (OpenSSH's ControlMaster) or ``"own"``
        (this process's alone, ``persist=0``)."""
        return str(self._link.kind)

    def open_shared(self) -> bool:
        """Connect now, asking at this terminal what the login needs, so that later corral
        processes reuse the connection; whether this call logged in (False: it was open)."""
        return bool(self._link.open())

    def close_shared(self) -> bool:
        """Close the shared connection for every corral process; whether one was open."""
        return bool(self._link.shut())

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
        stdin = input.encode() if input is not None else None
        command = remote_command(
            argv, cwd=cwd, env=env, login_shell=self.login_shell, stdin=stdin is not None
        )
        code, out, err = self._link.execute(command, stdin, timeout, argv[0])
        result = Result(
            tuple(argv), code, out.decode(errors="replace"), err.decode(errors="replace")
        )
        if check and not result.ok:
            tail = result.stderr.strip().splitlines()[-1:] or [""]
            raise ConnectorError(f"{argv[0]} on {self.destination} exited with {code}: {tail[0]}")
        return result

    def _run_idempotent(self, argv: list[str]) -> None:
        """Run a command that is safe to repeat; once more if the connection dropped under it."""
        from corral.connectors.ssh_transport import ConnectionLost

        try:
            self.run(argv, check=True)
        except ConnectionLost:
            self.run(argv, check=True)

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
                # A broken pipe or a reset is the socket's (a relayed session's) own.
                if (
                    isinstance(exc, OSError)
                    and not isinstance(exc, BrokenPipeError | ConnectionResetError)
                    and not (exc.errno is None and sftp_lost(sftp))
                ):
                    reason = os.strerror(exc.errno) if exc.errno else str(exc)
                    raise ConnectorError(f"{failed}: {reason}") from exc
                self._link.discard(sftp)
                if attempt == 2 or not idempotent:
                    detail = str(exc) or type(exc).__name__
                    raise ConnectorError(f"{failed}: connection lost ({detail})") from exc
        raise AssertionError("unreachable")

    def put(self, local: PathLike, remote: PathLike) -> None:
        """Upload a local file: to a temporary file, then renamed (``posix-rename``) over
        ``remote``, so that a reader never sees half of it and a dropped connection is safe
        to retry."""
        target = PurePosixPath(str(remote))
        tmp = str(target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.tmp"))

        def upload(s: paramiko.SFTPClient) -> None:
            try:
                s.put(str(local), tmp)
                s.posix_rename(tmp, str(target))
            except BaseException:
                with contextlib.suppress(OSError):
                    s.remove(tmp)
                raise

        self._sftp("cannot upload to", remote, upload)

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
        argv = [str(a) for a in argv]
        command = remote_command(argv, login_shell=self.login_shell)
        for chunk in self._link.stream(command, argv[0]):
            yield chunk.decode(errors="replace")

    def close(self) -> None:
        """Let go of this process's use of the connection (the next use reconnects); a
        shared connection stays for the other processes until ``corral ssh close``."""
        self._link.close()


@hookimpl
def corral_register_connectors(registry: Registry[Connector]) -> None:
    """Register the SSH connector."""
    registry.add(SSHConnector)
