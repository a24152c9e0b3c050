"""What the workspace commands share: the ``--workspace`` option and table output."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click

from corral.core.workspace import Workspace
from corral.errors import ConfigError

F = TypeVar("F", bound=Callable[..., Any])

WORKSPACE_ENV = "CORRAL_WORKSPACE"


def workspace_option(fn: F) -> F:
    """``--workspace/-w DIR``; the command gets a ``workspace: Workspace`` argument."""

    @click.option(
        "--workspace",
        "-w",
        "workspace_dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help=f"The workspace (default: ${WORKSPACE_ENV}, else ./workspace).",
    )
    @functools.wraps(fn)
    def wrapper(*args: Any, workspace_dir: Path | None, **kwargs: Any) -> Any:
        return fn(*args, workspace=open_workspace(workspace_dir), **kwargs)

    return wrapper  # type: ignore[return-value]


def workspace_path_option(help: str) -> Callable[[F], F]:
    """``--workspace/-w DIR`` given as a path that need not exist (``workspace`` argument)."""
    return click.option(
        "--workspace",
        "-w",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help=help,
    )


def open_workspace(path: str | os.PathLike[str] | None) -> Workspace:
    """The workspace at ``path``, else ``$CORRAL_WORKSPACE``, else ``./workspace``; a
    ConfigError if there is none."""
    given = path if path is not None else os.environ.get(WORKSPACE_ENV) or "workspace"
    workspace = Workspace(given)
    if not workspace.root.is_dir():
        how = "--workspace" if path is not None else (
            f"${WORKSPACE_ENV}" if os.environ.get(WORKSPACE_ENV) else "the default"
        )
        raise ConfigError(
            f"no workspace at {workspace.root} (from {how}; give --workspace/-w DIR or set "
            f"{WORKSPACE_ENV})"
        )
    return workspace


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, title: str = "") -> None:
    """A table: rich's on a terminal, aligned plain columns otherwise (for pipes and tests)."""
    if sys.stdout.isatty():
        try:
            from rich.console import Console
            from rich.table import Table
        except ImportError:
            pass
        else:
            table = Table(title=title or None, header_style="bold", box=None, pad_edge=False)
            for header in headers:
                table.add_column(header, overflow="fold")
            for row in rows:
                table.add_row(*row)
            Console().print(table)
            return
    click.echo(plain_table(headers, rows))


def plain_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell, two spaces apart."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in [list(headers), *rows]
    ]
    return "\n".join(lines)
