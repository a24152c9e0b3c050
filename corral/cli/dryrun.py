"""``corral dry-run script.py [args]``: what an experiment script would submit, done not."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import click

from corral.cli import cli
from corral.core.dryrun import DRY_RUN_ENV
from corral.errors import ConfigError


@cli.command(
    "dry-run",
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)
@click.argument("script", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def dry_run_command(ctx: click.Context, script: Path, args: tuple[str, ...]) -> None:
    """Run an experiment script with CORRAL_DRY_RUN=1: every experiment() in it prints each
    job's script, submit command and environment changes, and starts nothing."""
    ctx.exit(run_dry(script, args, "dry-run"))


def run_dry(script: Path, args: Sequence[str], command: str, **environ: str) -> int:
    """Run ``script`` with ``CORRAL_DRY_RUN=1`` (and ``environ``), its output through click;
    its exit status."""
    if not script.is_file():
        raise ConfigError(
            f"{command}: no script {script}; give an experiment script file "
            f"(corral {command} SCRIPT.py [ARGS...])"
        )
    env = {**os.environ, DRY_RUN_ENV: "1", **environ}
    with subprocess.Popen(
        [sys.executable, str(script), *args],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
        bufsize=1,
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:  # through click: the output goes where the command's does
            click.echo(line, nl=False)
    return proc.returncode
