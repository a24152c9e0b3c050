"""The ``corral`` command.

Subcommands find the global options in ``ctx.obj``: ``ctx.obj["quiet"]`` (print nothing but
failures) and ``ctx.obj["debug"]``. A :class:`~corral.errors.CorralError` they raise prints
one line, ``corral: error: …``, and exits with status 1; with ``--debug`` it shows the
traceback instead.
"""

from __future__ import annotations

import sys
from typing import IO, Any

import click

from corral._version import __version__
from corral.errors import CorralError


class OneLineError(click.ClickException):
    """A :class:`~corral.errors.CorralError` shown as one line on stderr."""

    exit_code = 1

    def __init__(self, error: CorralError) -> None:
        super().__init__(one_line(error))
        self.error = error

    def show(self, file: IO[Any] | None = None) -> None:
        """Print ``corral: error: <message>``."""
        click.echo(f"corral: error: {self.format_message()}", file=file, err=file is None)


def one_line(error: BaseException) -> str:
    """The error's message on one line (a list of failed jobs is joined with ``;``)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    return lines[0] + (" " + "; ".join(lines[1:]) if len(lines) > 1 else "")


class CorralGroup(click.Group):
    """A group that turns the CorralErrors of its commands into one-line errors."""

    def invoke(self, ctx: click.Context) -> Any:
        """Run the subcommand; a CorralError becomes :class:`OneLineError` unless ``--debug``."""
        try:
            return super().invoke(ctx)
        except CorralError as exc:
            if ctx.find_root().params.get("debug"):
                raise
            raise OneLineError(exc) from exc


@click.group(cls=CorralGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="corral")
@click.option("--debug", is_flag=True, help="Show the traceback of an error.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but failures.")
@click.pass_context
def cli(ctx: click.Context, debug: bool, quiet: bool) -> None:
    """Run experiments on your laptop, SSH hosts and SLURM clusters."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    ctx.obj["quiet"] = quiet


def main() -> None:
    """Console entry point: a CorralError is one line on stderr (a traceback with --debug)."""
    options: dict[str, Any] = {}  # becomes ctx.obj: --debug is known here after an error
    try:
        result = cli.main(prog_name="corral", standalone_mode=False, obj=options)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(1)
    except CorralError as exc:  # raised outside a command (or --debug)
        if options.get("debug"):
            raise
        OneLineError(exc).show()
        sys.exit(1)
    if isinstance(result, int) and result:  # ctx.exit(code) in a command
        sys.exit(result)


# Each module registers its commands on `cli` when imported.
from corral.cli import check as _check  # noqa: E402, F401
from corral.cli import dryrun as _dryrun  # noqa: E402, F401
from corral.cli import find as _find  # noqa: E402, F401
from corral.cli import gc as _gc  # noqa: E402, F401
from corral.cli import jobs as _jobs  # noqa: E402, F401
from corral.cli import plugins as _plugins  # noqa: E402, F401
from corral.cli import ssh as _ssh  # noqa: E402, F401
from corral.cli import why as _why  # noqa: E402, F401
from corral.cli import xp as _xp  # noqa: E402, F401
