"""``corral find QUERY``: which declared hosts match a capacity query, and why the others don't."""

from __future__ import annotations

import os
from pathlib import Path

import click

from corral.cli import cli
from corral.cli.options import workspace_path_option


@cli.command("find")
@click.argument("query")
@workspace_path_option(
    "Also read this workspace's corral.toml (default: $CORRAL_WORKSPACE, if set)."
)
@click.pass_context
def find_command(ctx: click.Context, query: str, workspace: Path | None) -> None:
    """Show the hosts fitting a job described by QUERY, e.g. 'gpus=1 & gpu_mem>=24G & time<=2h'.

    Terms KEY OP VALUE joined by '&'; keys cpus, gpus, mem, gpu_mem, time; operators
    =, >=, <=, >, <. The first matching host is the one find_launcher() picks. Exits with
    1 when no host matches.
    """
    from corral.app.finder import match_hosts
    from corral.app.hosts import load_hosts
    from corral.cli.options import WORKSPACE_ENV

    config = load_hosts(workspace or os.environ.get(WORKSPACE_ENV) or None)
    results = match_hosts(query, hosts=config)
    if not results:
        click.echo(f"no host is declared (looked in {config.describe_search()})", err=True)
        ctx.exit(1)
    width = max(len(r.name) for r in results)
    first = next((r.name for r in results if r.matches), None)
    for r in results:
        if r.matches:
            mark = click.style("match", fg="green")
            note = "  <- find_launcher picks this one" if r.name == first else ""
            click.echo(f"{mark}  {r.name:<{width}}  {r.launcher} ({r.where}){note}")
        else:
            mark = click.style("no   ", fg="red")
            click.echo(f"{mark}  {r.name:<{width}}  {r.launcher}: {'; '.join(r.reasons)}")
    if first is None:
        click.echo(f"no host matches {query!r}", err=True)
        ctx.exit(1)
