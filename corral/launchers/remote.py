"""``Host``: where a launcher's job directories live — this machine, or an SSH host — and
the launcher's end of the host protocol (:mod:`corral.host.protocol`).

Work on job directories (claim and write, read markers, start detached) is done by the
agent's commands (:mod:`corral.host.agent`): in this process for this machine, or by
``python -m corral.host.agent`` over the SSH connection for another host, one command for a
whole batch either way. The code snapshots of the jobs ride in the ``start`` command that
needs them, once per snapshot for each host.
"""

from __future__ import annotations

import json
import shlex
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from corral._version import __version__
from corral.connectors.base import Connector
from corral.connectors.ssh import SSHConnector
from corral.core.launcher import J, Launcher
from corral.errors import (
    AuthenticationError,
    ConfigError,
    ConnectorError,
    HostKeyError,
    SubmissionError,
)
from corral.host import agent
from corral.host.protocol import AgentClient, SnapshotEntry

if TYPE_CHECKING:
    from corral.core.job import Failure, Job, Status

CALL_ATTEMPTS = 3
"""Tries of an agent command whose connection failed (the connector reconnects between)."""


def check_workdir(owner: str, workdir: str) -> str:
    """A remote workdir must be absolute or start with ``~/``, and hold no ``..``.

    Remote paths are never resolved, so a ``..`` would give one directory two names: two
    sets of job pointers, two locations for the same dependencies.
    """
    if not isinstance(workdir, str) or not (workdir.startswith(("/", "~/")) or workdir == "~"):
        raise ConfigError(
            f"{owner}: workdir must be an absolute remote path or start with '~/', got {workdir!r}"
        )
    if ".." in PurePosixPath(workdir).parts:
        raise ConfigError(f"{owner}: workdir {workdir!r} must not contain a '..' component")
    return workdir


class Host:
    """The machine of a launcher's job directories, and how to run agent commands there."""

    def __init__(
        self, connector: Connector, *, python: str, setup: Sequence[str], workdir: str | None
    ) -> None:
        self.connector = connector
        self.python = python
        self.setup = list(setup)
        self.workdir = workdir
        self._resolved: PurePosixPath | None = None
        self.calls: Counter[str] = Counter()
        """Agent commands sent, by command (each one round trip to a remote host)."""
        self.agent = AgentClient(lambda command, request: self.call(command, request))
        """The agent's commands, typed (over :meth:`call`, looked up at each command)."""
        self.uploads: Counter[str] = Counter()
        """Code snapshots sent with ``start`` commands, by hash."""
        self._installed: set[str] = set()

    @property
    def remote(self) -> bool:
        """Whether the job directories are on another machine."""
        return isinstance(self.connector, SSHConnector)

    @property
    def user(self) -> str:
        """The user jobs run as on the host."""
        if isinstance(self.connector, SSHConnector):
            return self.connector.destination.user
        import getpass

        return getpass.getuser()

    def __str__(self) -> str:
        if isinstance(self.connector, SSHConnector):
            return str(self.connector.destination)
        return "this machine"

    def agent_argv(self, command: str) -> list[str]:
        """The argv that runs the agent command ``command`` on the host (request on stdin)."""
        setup = "".join(f"{line}\n" for line in self.setup)
        # From /: `python -m` puts the working directory first on sys.path, and a `corral`
        # directory in $HOME (a workdir named ~/corral) would hide the installed package.
        python = shlex.quote(self.python)
        return ["bash", "-c", f"{setup}cd / && exec {python} -m corral.host.agent {command}"]

    def call(self, command: str, request: Any) -> Any:
        """Run the agent command ``command`` with ``request``; its JSON answer (the typed
        way is :attr:`agent`)."""
        self.calls[command] += 1
        if not self.remote:  # same JSON round trip as remote, without a process
            return agent.answer(command, request)
        payload = json.dumps(request)
        for attempt in range(1, CALL_ATTEMPTS + 1):
            try:
                result = self.connector.run(self.agent_argv(command), input=payload)
                break
            except (AuthenticationError, HostKeyError):
                raise  # not a passing fault: trying again changes nothing
            except ConnectorError:
                # Every agent command is idempotent (a job is started under its lock, only if
                # not started yet), so a command whose reply was lost is simply sent again.
                if attempt == CALL_ATTEMPTS:
                    raise
                time.sleep(attempt)
        if not result.ok:
            tail = result.stderr.strip().splitlines()[-1:] or ["(no output)"]
            raise SubmissionError(
                f"corral agent `{command}` failed on {self} with python {self.python!r}: {tail[0]}",
                argv=["python", "-m", "corral.host.agent", command],
                returncode=result.returncode,
                stderr=result.stderr,
            )
        try:
            return json.loads(result.stdout)
        except ValueError as exc:
            raise SubmissionError(
                f"corral agent `{command}` on {self} answered no JSON (with python "
                f"{self.python!r}): {result.stdout.strip()[:200]!r}"
            ) from exc

    def snapshots(self, jobs: Sequence[Job], root: PurePosixPath) -> list[SnapshotEntry]:
        """The ``snapshots`` of a ``start`` request for ``jobs``: each code snapshot they
        import from that this host was not sent yet, for ``<root>/code/<hash>``."""
        from corral.core import snapshot

        entries = []
        for snap in {j.snapshot.hash: j.snapshot for j in jobs if j.snapshot}.values():
            target = root / snapshot.CODE / snap.hash
            if snap.hash in self._installed or (not self.remote and Path(target) == snap.store):
                continue
            entry: SnapshotEntry = {"hash": snap.hash, "dir": str(target)}
            if self.remote:
                entry["archive"] = snapshot.pack(snap.store)
            else:
                entry["source"] = str(snap.store)
            entries.append(entry)
        return entries

    def sent(self, entries: Sequence[SnapshotEntry]) -> None:
        """Note that the host received ``entries`` (a ``start`` carrying them succeeded)."""
        for entry in entries:
            self._installed.add(entry["hash"])
            self.uploads[entry["hash"]] += 1

    def known_root(self) -> PurePosixPath | None:
        """The workdir when it is known without connecting: resolved already, or with no
        ``~`` to resolve; None when it needs the host (or is the caller's default)."""
        if self._resolved is not None:
            return self._resolved
        if self.workdir is None or (self.remote and self.workdir.startswith("~")):
            return None
        return PurePosixPath(self.workdir)

    def root(self, default: PurePosixPath) -> PurePosixPath:
        """The workdir with ``~`` resolved (``default`` when none was given, on this machine).

        On another host, the first call checks its python and corral.
        """
        if self._resolved is None:
            if not self.remote:
                self._resolved = PurePosixPath(self.workdir) if self.workdir else default
                return self._resolved
            try:
                info = self.agent.version()
            except SubmissionError as exc:
                raise SubmissionError(
                    f"cannot use python {self.python!r} on {self}: it must exist and have "
                    f"corral {__version__} installed ({exc.stderr.strip() or exc})"
                ) from exc
            if info["corral"].split(".")[:2] != __version__.split(".")[:2]:
                raise SubmissionError(
                    f"{self}: python {info['executable']} has corral {info['corral']}, this "
                    f"client has {__version__}: install the same version"
                )
            assert self.workdir is not None
            self._resolved = PurePosixPath(self.workdir.replace("~", info["home"], 1))
        return self._resolved


class AgentLauncher(Launcher):
    """A launcher whose job directories are handled by the agent on its :class:`Host`: each
    of these calls is one agent command for every job given."""

    host: Host

    def submitted(self, jobs: Sequence[Job]) -> str:
        """This launcher's name, and the host when it is another machine."""
        if not self.host.remote:
            return self.name
        return f"{self.name} on {self.label or self.host}"

    def recover(self, jobs: Sequence[Job]) -> dict[Job, Status | None]:
        """Ask the host, for every job at once, what is done or still running."""
        found = self.host.agent.recover(self.name, [j.directory for j in jobs])
        result: dict[Job, Status | None] = {}
        for job, answer in zip(jobs, found, strict=True):
            if answer.handle is not None:
                job.handle = answer.handle
            result[job] = answer.status
        return result

    def markers(self, jobs: Sequence[J]) -> dict[J, Status | None]:
        """Every job's final marker, in one command."""
        found = self.host.agent.inspect([j.directory for j in jobs])
        return dict(zip(jobs, found, strict=True))

    def mark_all_failed(self, failures: Mapping[J, Failure]) -> None:
        """Write the ``failed`` markers of jobs that could not run, in one command."""
        self.host.agent.fail([(j.directory, f) for j, f in failures.items()])
