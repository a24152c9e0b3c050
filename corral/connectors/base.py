"""The connector contract: a shell and a filesystem, here or on another host.

A connector knows nothing of jobs. Launchers get one injected and do every file operation
through it, so a remote connector drops in without touching launchers. Paths are the target
side's POSIX paths, given as strings or ``PurePosixPath``.
"""

from __future__ import annotations

import abc
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath
from types import TracebackType
from typing import Any, ClassVar, Self

from corral.errors import ConfigError

PathLike = str | PurePath

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def check_env_name(name: str) -> str:
    """``name`` if it is a valid environment variable name, else a ConfigError."""
    if not _ENV_NAME.match(name):
        raise ConfigError(
            f"invalid environment variable name {name!r}: letters, digits and '_', "
            "not starting with a digit"
        )
    return name


def not_utf8(exc: UnicodeDecodeError) -> str:
    """Where and why bytes are not UTF-8, for a one-line message."""
    return f"byte {exc.object[exc.start]:#04x} at offset {exc.start}: {exc.reason}"


def atomic_write_text(path: Path, text: str, mode: int = 0o644) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename.

    Readers and a writer killed mid-way never leave a half-written file. There is no fsync:
    these are job files and state, rewritten on the next run after a power loss.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class Result:
    """What a command returned."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        """Whether the command exited with status 0."""
        return self.returncode == 0


class Connector(abc.ABC):
    """A shell and a filesystem. Subclasses declare their registered ``name``."""

    name: ClassVar[str]

    @abc.abstractmethod
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
        """Run ``argv`` (never through a shell string) and return its result.

        ``env`` adds to the target's environment. With ``check=True`` a non-zero exit raises
        :class:`~corral.errors.ConnectorError`.
        """

    @abc.abstractmethod
    def put(self, local: PathLike, remote: PathLike) -> None:
        """Copy the local file ``local`` to ``remote`` on the target."""

    @abc.abstractmethod
    def get(self, remote: PathLike, local: PathLike) -> None:
        """Copy the target's file ``remote`` to the local file ``local``."""

    @abc.abstractmethod
    def read_text(self, path: PathLike) -> str:
        """The content of a text file on the target."""

    @abc.abstractmethod
    def write_text(self, path: PathLike, text: str, *, mode: int = 0o644) -> None:
        """Write a text file atomically: readers see the old content or the new, never half."""

    @abc.abstractmethod
    def mkdir(self, path: PathLike, *, parents: bool = True, exist_ok: bool = True) -> None:
        """Create a directory."""

    @abc.abstractmethod
    def exists(self, path: PathLike) -> bool:
        """Whether ``path`` exists on the target."""

    @abc.abstractmethod
    def remove(self, path: PathLike, *, recursive: bool = False) -> None:
        """Remove a file (or a directory tree with ``recursive=True``); missing is fine."""

    @abc.abstractmethod
    def listdir(self, path: PathLike) -> list[str]:
        """The names in a directory, sorted."""

    def get_tree(self, remote: PathLike, local: PathLike) -> None:
        """Copy the target's directory ``remote`` (recursively) into the local ``local``."""
        from pathlib import Path, PurePosixPath

        from corral.errors import ConnectorError

        target = Path(local)
        target.mkdir(parents=True, exist_ok=True)
        for name in self.listdir(remote):
            source = PurePosixPath(str(remote)) / name
            try:
                self.listdir(source)
            except ConnectorError:  # not a directory
                self.get(source, target / name)
            else:
                self.get_tree(source, target / name)

    def read_from(self, path: PathLike, offset: int = 0) -> bytes | None:
        """The bytes of a file from ``offset`` on (a log followed as it grows); None when
        there is no such file yet. The default reads the whole file as text."""
        if not self.exists(path):
            return None
        return self.read_text(path).encode("utf-8")[offset:]

    def describe(self) -> dict[str, str | None]:
        """How to reach the target again (kept in a job's local pointer)."""
        return {"connector": self.name}

    @classmethod
    def reconnect(cls, description: Mapping[str, Any]) -> Connector:
        """A connector to the target that :meth:`describe` described (``corral jobs`` reaches
        recorded jobs with it). The default takes no argument."""
        return cls()

    def close(self) -> None:  # noqa: B027  (nothing to release by default)
        """Release connections; the connector may reconnect on next use."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
