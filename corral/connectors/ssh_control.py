"""A destination reached through OpenSSH's own master connection, where the user's ssh config
asks for one (``ControlMaster`` with a ``ControlPath``): commands run as ``ssh HOST -- ...``
through the master, files over ``ssh -s HOST sftp``. The master is OpenSSH's: it logs in with
OpenSSH's prompts (``corral ssh open HOST`` starts it at the terminal) and stays as the
config's ``ControlPersist`` says. corral never starts a login through it without a terminal:
every command runs with ``BatchMode=yes``.
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import IO, Any

from corral.connectors.ssh_auth import open_shared_hint
from corral.connectors.ssh_config import Destination
from corral.errors import ConnectorError, LoginNeeded


class _PipeSocket:
    """An ``ssh -s HOST sftp`` process as the socket paramiko's SFTPClient wants."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdin is not None
        assert proc.stdout is not None
        self.proc = proc
        self.stdin: IO[bytes] = proc.stdin
        self.stdout: IO[bytes] = proc.stdout
        self.closed = False

    def send(self, data: bytes) -> int:
        self.stdin.write(data)
        self.stdin.flush()
        return len(data)

    def recv(self, n: int) -> bytes:
        data = self.stdout.read1(n)  # type: ignore[attr-defined]  # a BufferedReader
        if not data:
            self.closed = True
        return bytes(data)

    def close(self) -> None:
        self.closed = True
        with contextlib.suppress(OSError):
            self.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        with contextlib.suppress(OSError):
            self.stdout.close()

    def get_name(self) -> str:
        return "openssh"

    def get_transport(self) -> _PipeSocket:
        return self

    def is_active(self) -> bool:
        return not self.closed and self.proc.poll() is None


class SftpSession:
    """The one SFTP session a link keeps for this process (``_sftp``, under ``lock``),
    opened again after it is discarded; closing it leaves the connection to the others."""

    lock: threading.RLock
    _sftp: Any

    def discard(self, sftp: Any) -> None:
        """Forget ``sftp`` after it lost its connection."""
        with self.lock:
            if self._sftp is sftp:
                with contextlib.suppress(Exception):
                    sftp.close()
                self._sftp = None

    def close(self) -> None:
        """Close this process's SFTP session; the connection (OpenSSH's master, or the
        holder) stays for the other processes."""
        with self.lock:
            if self._sftp is not None:
                self.discard(self._sftp)


class ControlLink(SftpSession):
    """Commands and files through the OpenSSH master of ``dest`` (see the module)."""

    def __init__(self, dest: Destination, timeout: float) -> None:
        self.dest = dest
        self.timeout = timeout
        self.operations = 0
        self.connects = 1
        self.seen = False  # whether a master ran for this process once
        self.lock = threading.RLock()
        self.sftp_lock = threading.Lock()
        self._sftp: Any = None

    def ssh(self, *extra: str) -> list[str]:
        """``ssh`` with the destination's config, never prompting."""
        config = ["-F", self.dest.config_file] if self.dest.config_file else []
        return ["ssh", *config, "-o", "BatchMode=yes", *extra, self.dest.alias]

    def master_alive(self) -> bool:
        """Whether OpenSSH's master for the destination runs."""
        check = subprocess.run(
            [*self.ssh("-O", "check")], capture_output=True, timeout=30, check=False
        )
        return check.returncode == 0

    def _ensure(self) -> None:
        if self.master_alive():
            self.seen = True
            return
        # Without a master, ssh starts one itself (ControlMaster auto) when that needs no
        # person; one that would ask is the user's to open, at a terminal.
        keep = self.dest.control_persist or "600"
        start = subprocess.run(
            self.ssh("-o", f"ControlPersist={keep}", "-f", "-N"),
            capture_output=True,
            text=True,
            timeout=self.timeout + 30,
            check=False,
        )
        if start.returncode != 0 or not self.master_alive():
            why = (start.stderr.strip().splitlines() or ["no master"])[-1]
            raise LoginNeeded(
                f"{self.dest}: OpenSSH's master connection (ControlMaster in the ssh config) is "
                f"not running and cannot start without a person ({why}): "
                f"{open_shared_hint(self.dest.alias)}",
                alias=self.dest.alias,
                dropped=self.seen,
            )
        self.seen = True

    def execute(
        self, command: str, stdin: bytes | None, timeout: float | None, what: str
    ) -> tuple[int, bytes, bytes]:
        """Run ``command`` through the master; its exit code, stdout and stderr."""
        from corral.connectors.ssh_transport import ConnectionLost

        self._ensure()
        self.operations += 1
        try:
            done = subprocess.run(
                [*self.ssh(), "--", command],
                input=stdin or b"",
                capture_output=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise ConnectorError(f"{what} on {self.dest} timed out after {timeout} s") from None
        if done.returncode == 255 and not self.master_alive():
            raise ConnectionLost(f"connection to {self.dest} lost while running {what}")
        return done.returncode, done.stdout, done.stderr

    def stream(self, command: str, what: str) -> Iterator[bytes]:
        """Run ``command``; yield its standard output as it arrives."""
        self._ensure()
        self.operations += 1
        proc = subprocess.Popen(
            [*self.ssh(), "--", command],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert proc.stdout is not None
        try:
            while chunk := proc.stdout.read1(65536):  # type: ignore[attr-defined]
                yield bytes(chunk)
        finally:
            proc.kill()
            proc.wait()
            proc.stdout.close()

    def sftp(self) -> Any:
        """An SFTP session over ``ssh -s HOST sftp`` through the master."""
        import paramiko

        with self.lock:
            if self._sftp is not None and not self._sftp.get_channel().closed:
                return self._sftp
            self._ensure()
            proc = subprocess.Popen(
                [*self.ssh("-s"), "sftp"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            )
            try:
                self._sftp = paramiko.SFTPClient(_PipeSocket(proc))  # type: ignore[arg-type]
            except (OSError, EOFError, paramiko.SSHException) as exc:
                proc.kill()
                raise ConnectorError(f"cannot open SFTP on {self.dest}: {exc}") from exc
            return self._sftp

    kind = "openssh"

    def open(self) -> bool:
        """Start the master at this terminal (OpenSSH asks what the login needs), kept as
        the config's ``ControlPersist`` says (10 minutes without one); whether it started."""
        if self.master_alive():
            return False
        config = ["-F", self.dest.config_file] if self.dest.config_file else []
        keep = self.dest.control_persist or "600"
        started = time.monotonic()
        done = subprocess.run(
            [
                "ssh",
                *config,
                "-o",
                "ControlMaster=yes",
                "-o",
                f"ControlPersist={keep}",
                "-f",
                "-N",
                self.dest.alias,
            ],
            check=False,
        )
        if done.returncode != 0 or not self.master_alive():
            raise ConnectorError(
                f"ssh could not open the master connection to {self.dest} "
                f"(exit {done.returncode} after {time.monotonic() - started:.0f} s)"
            )
        return True

    def shut(self) -> bool:
        """Stop the master (``ssh -O exit``); whether one ran."""
        self.close()
        if not self.master_alive():
            return False
        subprocess.run(self.ssh("-O", "exit"), capture_output=True, timeout=30, check=False)
        return True
