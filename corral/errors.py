"""The one exception tree of corral.

Every error corral raises on purpose derives from :class:`CorralError`; errors coming from
paramiko, fabric, subprocess or SLURM are translated at the boundary (``raise ... from exc``)
so the original stays available as ``__cause__``::

    CorralError
    ├── ConfigError            bad declaration, bad value, missing param, sealed config
    ├── PluginError            plugin import failure, duplicate name, unknown launcher
    ├── ConnectorError         a connector could not do what was asked
    │   ├── AuthenticationError    the remote side refused our credentials
    │   │   └── LoginNeeded            a login must be answered (a prompt) and nobody can
    │   └── HostKeyError           unknown or changed host key
    ├── SubmissionError        a launcher could not submit (argv, exit code, stderr tail)
    └── JobFailedError         one or more jobs of an experiment failed
"""

from __future__ import annotations

import difflib
import shlex
from collections.abc import Iterable, Sequence
from typing import NamedTuple


class CorralError(Exception):
    """Base class of every error corral raises on purpose."""


class ConfigError(CorralError):
    """A configuration class or value is invalid."""


class PluginError(CorralError):
    """A plugin failed to load, or registered something invalid."""


class ConnectorError(CorralError):
    """A connector operation (command, file transfer, connection) failed."""


class AuthenticationError(ConnectorError):
    """The remote host refused our credentials."""


class LoginNeeded(AuthenticationError):
    """The host asks something (a second factor, a password, a passphrase) that only a
    person at a terminal can answer, and there is none, or no shared connection to use.

    :param alias: the host, as the user names it (``corral ssh open ALIAS`` opens it).
    :param dropped: a connection was there and dropped (an experiment then waits for the
        user to open it again); else none was ever made (nothing can go on).
    """

    def __init__(self, message: str, *, alias: str, dropped: bool = False) -> None:
        super().__init__(message)
        self.alias = alias
        self.dropped = dropped


class HostKeyError(ConnectorError):
    """The remote host key is unknown or does not match the recorded one."""


class SubmissionError(CorralError):
    """A launcher failed to submit a job.

    :param message: what failed, in one line.
    :param argv: the command that was run, if any.
    :param returncode: its exit code, if it ran.
    :param stderr: its standard error; only the tail is kept.
    """

    STDERR_TAIL = 2000

    def __init__(
        self,
        message: str,
        *,
        argv: Sequence[str] | None = None,
        returncode: int | None = None,
        stderr: str = "",
    ) -> None:
        self.argv = list(argv) if argv is not None else None
        self.returncode = returncode
        self.stderr = stderr[-self.STDERR_TAIL :]
        details = []
        if returncode is not None:
            details.append(f"exit code {returncode}")
        tail = self.stderr.strip().splitlines()
        if tail:
            details.append(tail[-1])
        super().__init__(message + (f" ({'; '.join(details)})" if details else ""))


class FailedJob(NamedTuple):
    """One failed job, as listed by :class:`JobFailedError`."""

    identifier: str
    task: str
    reason: str
    message: str
    stderr: str
    """Its stderr file, on the machine the job ran on."""
    workspace: str = ""
    """The workspace it is in (named in the command that shows its stderr)."""

    def __str__(self) -> str:
        detail = f": {self.message}" if self.message else ""
        shown = log_command(self.identifier, self.workspace) if self.workspace else self.stderr
        return f"{self.task} {self.identifier[:12]} {self.reason}{detail} (stderr: {shown})"


def log_command(identifier: str, workspace: str) -> str:
    """The command that prints a job's stderr, wherever the job ran."""
    return f"corral jobs log --err {identifier[:12]} -w {shlex.quote(workspace)}"


class ExperimentStopped(CorralError):
    """The experiment was stopped from outside (``corral xp kill``): it started nothing more
    and left once its running jobs had ended."""


class JobFailedError(CorralError):
    """Jobs of an experiment failed; ``failures`` lists them."""

    def __init__(self, failures: Sequence[FailedJob]) -> None:
        self.failures = list(failures)
        lines = "\n".join(f"  {f}" for f in self.failures)
        super().__init__(f"{len(self.failures)} job(s) failed:\n{lines}")


class CallbackFailed(CorralError):
    """``on_completed`` callbacks raised; their jobs are done all the same."""

    def __init__(self, failures: Sequence[str]) -> None:
        self.failures = list(failures)
        if len(self.failures) == 1:
            super().__init__(f"an on_completed callback failed: {self.failures[0]}")
        else:
            lines = "\n".join(f"  {f}" for f in self.failures)
            super().__init__(f"{len(self.failures)} on_completed callbacks failed:\n{lines}")


def closest(name: str, valid: Iterable[str]) -> str | None:
    """The valid name most like ``name``, when one is close enough to be a likely typo."""
    found = difflib.get_close_matches(str(name), list(valid), n=1, cutoff=0.6)
    return found[0] if found else None


def did_you_mean(name: str, valid: Iterable[str]) -> str:
    """``" (did you mean 'x'?)"`` when a valid name is close to ``name``, else ``""``: the
    hint every error about a mistyped name carries."""
    match = closest(name, valid)
    return f" (did you mean {match!r}?)" if match is not None else ""
