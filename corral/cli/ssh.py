"""``corral ssh open|close|status``: the SSH connections shared by your corral processes.

``open HOST`` logs in now, at this terminal (a second factor, a password, a key's
passphrase), so that experiments and commands run later — in a job, under ``nohup``, in
another terminal — use the same connection without asking. HOST is a host of the hosts file
or an ssh alias.
"""

from __future__ import annotations

import time
from pathlib import Path

import click

from corral.cli import cli
from corral.cli.options import workspace_path_option
from corral.connectors.ssh_share import PERSIST_ENV, persist_seconds, shut_all
from corral.errors import ConfigError


def _describe_persist(seconds: float) -> str:
    if seconds == float("inf"):
        return "until `corral ssh close`"
    minutes = seconds / 60
    shown = f"{minutes:g} min" if minutes >= 1 else f"{seconds:g} s"
    return f"until {shown} after the last one"


def _connector(host: str, workspace: Path | None):  # type: ignore[no-untyped-def]
    from corral.app.hosts import ssh_connector
    from corral.app.plugins import Plugins
    from corral.connectors.ssh import SSHConnector

    connector = ssh_connector(host, Plugins(), workspace)
    if not isinstance(connector, SSHConnector):
        raise ConfigError(f"{host}: not reached over SSH")
    return connector


@cli.group("ssh")
def ssh_group() -> None:
    """The SSH connections shared by your corral processes."""


@ssh_group.command("open")
@click.argument("host")
@workspace_path_option("Also read this workspace's corral.toml for HOST.")
def open_command(host: str, workspace: Path | None) -> None:
    """Log in to HOST now (answering its prompts here) and keep the connection for the
    corral processes that follow."""
    connector = _connector(host, workspace)
    dest = connector.destination
    if connector.sharing == "own":
        raise ConfigError(
            f"{host}: sharing is off for it (persist 0, or {PERSIST_ENV}=0): nothing to open"
        )
    fresh = connector.open_shared()
    done = "logged in" if fresh else "already open"
    if connector.sharing == "openssh":
        click.echo(
            f"{host} ({dest}): {done}, through OpenSSH's master (ControlMaster in the ssh "
            f"config), kept as its ControlPersist says (close it with: corral ssh close {host})"
        )
        return
    persist = persist_seconds(dest, None)
    click.echo(
        f"{host} ({dest}): {done}; shared by your corral processes "
        f"{_describe_persist(persist)} (close it with: corral ssh close {host})"
    )


@ssh_group.command("close")
@click.argument("host", required=False)
@click.option("--all", "every", is_flag=True, help="Close every shared connection of yours.")
@workspace_path_option("Also read this workspace's corral.toml for HOST.")
def close_command(host: str | None, every: bool, workspace: Path | None) -> None:
    """Close the shared connection to HOST (or, with --all, every one)."""
    if every == (host is not None):
        raise click.UsageError("give a HOST or --all (not both)")
    if host is None:
        click.echo(f"closed {shut_all()} shared connection(s)")
        return
    closed = _connector(host, workspace).close_shared()
    click.echo(f"{host}: {'closed' if closed else 'no shared connection was open'}")


@ssh_group.command("status")
def status_command() -> None:
    """The shared connections open now: destination, age, clients, idle time."""
    from corral.connectors.ssh_share import holders, runtime_dir
    from corral.ops.inventory import format_age

    found = holders()
    if not found:
        click.echo(f"no shared SSH connection is open (sockets in {runtime_dir()})")
        return
    now = time.time()
    for holder in found:
        age = format_age(now - float(holder.get("since", now)))
        idle = format_age(float(holder.get("idle", 0)))
        click.echo(
            f"{holder.get('alias')} ({holder.get('destination')}): open {age}, "
            f"{holder.get('clients', 0)} client(s) now, idle {idle}, pid {holder.get('pid')}"
        )
