"""The ``corral`` command."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

import corral
from corral.cli import cli, main
from corral.errors import ConfigError, FailedJob, JobFailedError


def test_version():
    out = subprocess.run(
        [sys.executable, "-c", "from corral.cli import main; main()", "--version"],
        capture_output=True, text=True, check=True,
    )
    assert out.stdout.strip() == f"corral, version {corral.__version__}"


def test_console_script_is_installed():
    from pathlib import Path

    exe = Path(sys.executable).parent / "corral"  # installed beside the interpreter
    assert exe.exists()
    out = subprocess.run([exe, "--help"], capture_output=True, text=True, check=True)
    assert "Run experiments" in out.stdout


# --- global options and errors ---------------------------------------------------------


@pytest.fixture
def command():
    """Add a command to ``corral`` for one test."""
    added = []

    def add(function):
        cmd = cli.command(function.__name__.replace("_", "-"))(function)
        added.append(cmd.name)
        return cmd

    yield add
    for name in added:
        cli.commands.pop(name)


def test_a_corral_error_is_one_line_and_exit_status_1(command):
    @command
    def boom():
        raise ConfigError("unknown key 'gpu' in hosts.toml; valid: cpus, gpus")

    result = CliRunner().invoke(cli, ["boom"])
    assert result.exit_code == 1
    assert result.stderr == "corral: error: unknown key 'gpu' in hosts.toml; valid: cpus, gpus\n"
    assert result.stdout == ""


def test_a_multiline_error_is_still_one_line(command):
    @command
    def failed():
        raise JobFailedError(
            [
                FailedJob("a" * 40, "pkg.Learn", "oom", "MemoryError", "/ws/a/stderr"),
                FailedJob("b" * 40, "pkg.Eval", "dependency", "", "/ws/b/stderr"),
            ]
        )

    result = CliRunner().invoke(cli, ["failed"])
    assert result.exit_code == 1
    assert result.stderr == (
        "corral: error: 2 job(s) failed: pkg.Learn aaaaaaaaaaaa oom: MemoryError "
        "(stderr: /ws/a/stderr); pkg.Eval bbbbbbbbbbbb dependency (stderr: /ws/b/stderr)\n"
    )


def test_debug_lets_the_error_through(command):
    @command
    def boom():
        raise ConfigError("bad value")

    result = CliRunner().invoke(cli, ["--debug", "boom"])
    assert result.exit_code == 1
    assert isinstance(result.exception, ConfigError)
    assert "corral: error" not in result.output


SCRIPT = """
from corral.cli import cli, main
from corral.errors import ConfigError

@cli.command()
def boom():
    raise ConfigError("bad value")

main()
"""


@pytest.mark.parametrize("debug", [False, True])
def test_console_entry_point_error_with_and_without_debug(debug):
    argv = [sys.executable, "-c", SCRIPT] + (["--debug"] if debug else []) + ["boom"]
    out = subprocess.run(argv, capture_output=True, text=True)
    assert out.returncode == 1
    assert out.stdout == ""
    if debug:
        assert out.stderr.startswith("Traceback (most recent call last):")
        assert out.stderr.endswith("corral.errors.ConfigError: bad value\n")
    else:
        assert out.stderr == "corral: error: bad value\n"


def test_quiet_and_debug_reach_subcommands(command):
    @command
    @click.pass_context
    def options(ctx):
        click.echo(f"quiet={ctx.obj['quiet']} debug={ctx.obj['debug']}")

    runner = CliRunner()
    assert runner.invoke(cli, ["options"]).output == "quiet=False debug=False\n"
    assert runner.invoke(cli, ["-q", "options"]).output == "quiet=True debug=False\n"
    assert runner.invoke(cli, ["--quiet", "--debug", "options"]).output == "quiet=True debug=True\n"


def test_exit_status_of_a_command_is_kept(command, monkeypatch):
    @command
    @click.pass_context
    def checks(ctx):
        ctx.exit(3)  # e.g. a failed check

    monkeypatch.setattr(sys, "argv", ["corral", "checks"])
    with pytest.raises(SystemExit) as e:
        main()
    assert e.value.code == 3


def test_usage_errors_stay_click_errors():
    result = CliRunner().invoke(cli, ["no-such-command"])
    assert result.exit_code == 2
    assert "No such command 'no-such-command'" in result.stderr


def test_plugins_command_is_registered():
    assert "plugins" in cli.commands
