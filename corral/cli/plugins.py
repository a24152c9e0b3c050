"""``corral plugins``: what is registered, and by which plugin and distribution."""

from __future__ import annotations

import click

from corral.cli import cli


@cli.command("plugins")
def plugins_command() -> None:
    """List launchers, connectors and hook implementations, with their plugins."""
    from corral.app.plugins import Plugins

    plugins = Plugins()

    def origin(plugin: str) -> str:
        dist = plugins.distribution(plugin)
        return f"{plugin} ({dist})" if dist else plugin

    for title, registry in (("launchers", plugins.launchers), ("connectors", plugins.connectors)):
        click.echo(f"{title}:")
        for name in registry.names():
            cls = registry.get(name)
            click.echo(
                f"  {name:<12} {cls.__module__}.{cls.__qualname__}  "
                f"from {origin(registry.origin(name))}"
            )
    click.echo("hook implementations:")
    for hook, names in plugins.hook_implementations().items():
        click.echo(f"  {hook}:" + ("" if names else " (none)"))
        for name in names:
            click.echo(f"    {origin(name)}")
