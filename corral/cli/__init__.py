"""The ``corral`` command."""

from __future__ import annotations

import sys

import click

from corral import __version__
from corral.errors import CorralError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="corral")
def cli() -> None:
    """Run experiments on your laptop, SSH hosts and SLURM clusters."""


def main() -> None:
    """Console entry point: a CorralError is one line on stderr, no traceback."""
    try:
        cli(standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(1)
    except CorralError as exc:
        click.echo(f"corral: error: {exc}", err=True)
        sys.exit(1)


from corral.cli import plugins as _plugins  # noqa: E402, F401  (registers the command)
