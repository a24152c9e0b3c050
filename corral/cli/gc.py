"""``corral gc``: remove the code snapshots no job refers to."""

from __future__ import annotations

from datetime import datetime

import click

from corral.cli import cli
from corral.cli.options import print_table, workspace_option
from corral.core.workspace import Workspace


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


@cli.command("gc")
@click.option("--dry-run", is_flag=True, help="List what would be removed; remove nothing.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@workspace_option
def gc_command(workspace: Workspace, dry_run: bool, yes: bool) -> None:
    """Remove the code snapshots (WORKSPACE/code/<hash>) that no job's params.json refers
    to and no running experiment holds."""
    from corral.ops.cleanup import collect_garbage, find_garbage

    garbage = find_garbage(workspace)
    if not garbage:
        click.echo(f"no unreferenced snapshot in {workspace.root}")
        return
    rows = [
        [g.hash[:16], str(g.files), _size(g.size),
         datetime.fromtimestamp(g.mtime).isoformat(sep=" ", timespec="seconds")]
        for g in garbage
    ]
    print_table(("SNAPSHOT", "FILES", "SIZE", "WRITTEN"), rows)
    total = _size(sum(g.size for g in garbage))
    if dry_run:
        click.echo(f"\n{len(garbage)} unreferenced snapshot(s), {total}: nothing removed (dry run)")
        return
    click.echo()
    if not yes and not click.confirm(f"Remove these {len(garbage)} snapshot(s) ({total})?"):
        click.echo("nothing removed")
        return
    removed = collect_garbage(workspace, [g.hash for g in garbage])
    click.echo(f"{len(removed)} of {len(garbage)} snapshot(s) removed")
