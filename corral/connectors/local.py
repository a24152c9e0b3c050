"""``LocalConnector``: the local machine, through subprocess (argv lists only) and pathlib."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, ParamSpec, TypeVar

from corral.connectors.base import Connector, PathLike, Result, atomic_write_text, not_utf8
from corral.errors import ConnectorError
from corral.plugins.markers import hookimpl

if TYPE_CHECKING:
    from corral.plugins.registry import Registry

P = ParamSpec("P")
R = TypeVar("R")


class LocalConnector(Connector):
    """Commands and files on this machine."""

    name = "local"

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
        """Run ``argv`` locally; see :meth:`Connector.run`."""
        argv = [str(a) for a in argv]
        full_env = {**os.environ, **env} if env else None
        try:
            proc = subprocess.run(
                argv,
                cwd=cwd,
                env=full_env,
                input=input,
                capture_output=True,
                text=True,
                errors="replace",  # output that is not UTF-8 (a job's, say) must not raise
                timeout=timeout,
                check=False,
            )
        except FileNotFoundError as exc:
            raise ConnectorError(f"command not found: {argv[0]}") from exc
        except subprocess.TimeoutExpired as exc:
            raise ConnectorError(f"command timed out after {timeout} s: {argv[0]}") from exc
        except OSError as exc:
            raise ConnectorError(f"cannot run {argv[0]}: {exc}") from exc
        result = Result(tuple(argv), proc.returncode, proc.stdout, proc.stderr)
        if check and not result.ok:
            tail = result.stderr.strip().splitlines()[-1:] or [""]
            raise ConnectorError(f"{argv[0]} exited with {result.returncode}: {tail[0]}")
        return result

    def put(self, local: PathLike, remote: PathLike) -> None:
        """Copy a file (both sides are local)."""
        self._wrap(shutil.copyfile, local, remote)

    def get(self, remote: PathLike, local: PathLike) -> None:
        """Copy a file (both sides are local)."""
        self._wrap(shutil.copyfile, remote, local)

    def read_text(self, path: PathLike) -> str:
        """Read a UTF-8 text file."""
        data = self._wrap(Path(path).read_bytes)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConnectorError(f"{path} is not UTF-8 text ({not_utf8(exc)})") from exc

    def write_text(self, path: PathLike, text: str, *, mode: int = 0o644) -> None:
        """Write a UTF-8 text file atomically."""
        self._wrap(atomic_write_text, Path(path), text, mode)

    def read_from(self, path: PathLike, offset: int = 0) -> bytes | None:
        """The bytes of a local file from ``offset`` on; None when it does not exist."""
        try:
            with open(path, "rb") as f:
                f.seek(offset)
                return f.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ConnectorError(f"cannot read {path}: {exc.strerror or exc}") from exc

    def mkdir(self, path: PathLike, *, parents: bool = True, exist_ok: bool = True) -> None:
        """Create a directory."""
        self._wrap(Path(path).mkdir, parents=parents, exist_ok=exist_ok)

    def exists(self, path: PathLike) -> bool:
        """Whether the path exists."""
        return os.path.exists(path)

    def remove(self, path: PathLike, *, recursive: bool = False) -> None:
        """Remove a file or, with ``recursive``, a directory tree."""
        p = Path(path)
        if recursive and p.is_dir() and not p.is_symlink():
            self._wrap(shutil.rmtree, p)
        else:
            self._wrap(p.unlink, missing_ok=True)

    def get_tree(self, remote: PathLike, local: PathLike) -> None:
        """Copy the directory ``remote`` into ``local``."""
        self._wrap(shutil.copytree, Path(remote), Path(local), dirs_exist_ok=True)

    def listdir(self, path: PathLike) -> list[str]:
        """Sorted names in a directory."""
        return sorted(self._wrap(os.listdir, path))

    @staticmethod
    def _wrap(fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except OSError as exc:
            where = exc.filename if exc.filename is not None else (args[0] if args else "")
            raise ConnectorError(f"{exc.strerror or exc}: {where}") from exc


@hookimpl
def corral_register_connectors(registry: Registry[Connector]) -> None:
    """Register the local connector."""
    registry.add(LocalConnector)
