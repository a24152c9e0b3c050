"""``corral why CONFIG_OR_SCRIPT``: why a config would run (again), or each job of a script."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import Any

import click

from corral.cli import cli
from corral.cli.dryrun import run_dry
from corral.cli.options import WORKSPACE_ENV, open_workspace
from corral.core.config import Config
from corral.core.dryrun import EXPLAIN_ENV
from corral.core.paths import import_root_for_file, module_name_for_file
from corral.errors import ConfigError

USAGE = "give a script (SCRIPT.py [ARGS...]) or a config as MODULE:NAME or FILE.py:NAME"


def load_config(ref: str) -> Config:
    """The config named by ``module:name`` or ``file.py:name``; a callable is called."""
    where, sep, name = ref.rpartition(":")
    if not sep or not where or not name:
        raise ConfigError(f"why: {ref!r}: {USAGE}")
    if where.endswith(".py"):  # imported under the name its classes' type ids use
        path = Path(where).resolve()
        if not path.is_file():
            raise ConfigError(f"why: no file {where}")
        root, where = str(import_root_for_file(path)), module_name_for_file(path)
    else:
        root = str(Path.cwd())  # as `python -m` would
    if root not in sys.path:
        sys.path.insert(0, root)
    try:
        module = importlib.import_module(where)
    except ImportError as exc:
        raise ConfigError(f"why: cannot import {where}: {exc}") from exc
    value: Any = module
    for part in name.split("."):
        if not hasattr(value, part):
            raise ConfigError(f"why: {where} has no {name!r}")
        value = getattr(value, part)
    if callable(value) and not isinstance(value, Config):
        value = value()
    if not isinstance(value, Config):
        raise ConfigError(f"why: {ref} is a {type(value).__name__}, not a Config")
    return value


@cli.command(
    "why", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False}
)
@click.option(
    "--workspace",
    "-w",
    "workspace_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help=f"For a config: the workspace (default: ${WORKSPACE_ENV}, else ./workspace).",
)
@click.argument("target")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def why_command(
    ctx: click.Context, workspace_dir: Path | None, target: str, args: tuple[str, ...]
) -> None:
    """Why would TARGET run? For a config (MODULE:NAME or FILE.py:NAME) whose identity
    matches no job, the closest job of its task and the params that differ; for an
    experiment script (ARGS go to it), a dry run explaining each job not done."""
    if target.endswith(".py") or os.path.isfile(target):
        if workspace_dir is not None:
            raise ConfigError("why: --workspace is for a config; a script names its own")
        ctx.exit(run_dry(Path(target), args, "why", **{EXPLAIN_ENV: "1"}))
    if args:
        raise ConfigError(f"why: arguments {' '.join(args)!r} go with a script, not a config")
    from corral.ops.explain import explain

    workspace = open_workspace(workspace_dir)
    click.echo(explain(load_config(target), workspace).render())
