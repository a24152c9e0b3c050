"""``corral check HOST``: a doctor for a declared host, one PASS/FAIL line per check.

Checks, in order: the host's declaration builds a launcher; over SSH, the connection and
the host key; the job python and its corral (``python -m corral.host.agent version``, as the
launcher runs it); for SLURM, the commands, accounting, partitions and accounts; the
workdir and its free disk space. Nothing is created or submitted.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import click

from corral.cli import cli
from corral.cli.options import workspace_path_option
from corral.errors import CorralError, HostKeyError, SubmissionError, did_you_mean

if TYPE_CHECKING:
    from corral.connectors.base import Connector, Result
    from corral.connectors.ssh import SSHConnector
    from corral.connectors.ssh_config import Destination
    from corral.core.launcher import Launcher
    from corral.launchers.slurm import SlurmLauncher
    from corral.plugins.manager import PluginManager

PASS, FAIL, WARN, SKIP = "PASS", "FAIL", "WARN", "SKIP"
COLORS = {PASS: "green", FAIL: "red", WARN: "yellow", SKIP: "bright_black"}
SYSTEM_KNOWN_HOSTS = "/etc/ssh/ssh_known_hosts"
TIMEOUT = 60.0

# Where the workdir is, or would be created: its nearest existing ancestor, whether that is a
# writable directory, and df's line for it. `~` is the remote user's home.
WORKDIR_SCRIPT = r"""
d=$1
case $d in "~") d=$HOME ;; "~/"*) d=$HOME/${d#"~/"} ;; esac
p=$d
while [ ! -e "$p" ]; do p=$(dirname -- "$p"); done
if [ -d "$p" ] && [ -w "$p" ]; then w=1; else w=0; fi
printf '%s\n%s\n%s\n' "$d" "$p" "$w"
df -Pk -- "$p" | tail -n 1
"""


class CheckFailed(CorralError):
    """A check could not read what it needs."""


class Outcome(NamedTuple):
    """The result of one check."""

    check: str
    status: str
    detail: str


def human(size: float) -> str:
    """A byte count in binary units: ``12.3 GiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _tail(result: Result) -> str:
    lines = (result.stderr.strip() or result.stdout.strip()).splitlines()
    return lines[-1] if lines else "(no output)"


def host_key(dest: Destination) -> tuple[str, str]:
    """Whether a key for ``dest`` is recorded in its known_hosts files."""
    import paramiko

    from corral.connectors.ssh_transport import fingerprint

    name = dest.hostname if dest.port == 22 else f"[{dest.hostname}]:{dest.port}"
    files = [f for f in (*dest.known_hosts, SYSTEM_KNOWN_HOSTS) if os.path.exists(f)]
    for file in files:
        keys = paramiko.HostKeys()
        try:
            keys.load(file)
        except (OSError, paramiko.SSHException) as exc:
            return FAIL, f"cannot read known_hosts file {file}: {exc}"
        entry = keys.lookup(name)
        if entry:
            found = ", ".join(f"{kind} {fingerprint(key)}" for kind, key in entry.items())
            return PASS, f"{name} in {file}: {found}"
    looked = ", ".join(files) or ", ".join(dest.known_hosts) or "~/.ssh/known_hosts"
    return FAIL, (
        f"no key for {name} in {looked}: check the host's fingerprint, then record it "
        "(ssh once, or host_key_policy = 'accept-new' in the host's ssh table)"
    )


class Doctor:
    """The checks of one host.

    :param name: the host, as declared in a hosts file.
    :param workspace: where ``corral.toml`` may be, and the workdir of local launchers.
    :param min_free: the free disk space (bytes) below which the disk check fails.
    """

    def __init__(
        self, name: str, *, workspace: Path, min_free: float, plugins: PluginManager
    ) -> None:
        self.name = name
        self.workspace = workspace
        self.min_free = min_free
        self.plugins = plugins
        self._workdir: list[str] | None = None

    def run(self) -> Iterator[Outcome]:
        """Run every check, yielding each outcome as soon as it is known."""
        from corral.app.hosts import load_hosts
        from corral.connectors.ssh import SSHConnector

        try:
            config = load_hosts(self.workspace)
            spec = config.get(self.name)
            launcher = config.build(self.name, self.plugins)
        except CorralError as exc:
            yield Outcome("config", FAIL, _first_line(exc))
            return
        yield Outcome("config", PASS, f"{spec.where()}: launcher {spec.launcher!r}")
        connector = launcher.connector
        checks = self.plan(launcher)
        if isinstance(connector, SSHConnector):
            try:
                connects = Outcome("connects", *self.connect(connector))
                yield connects
                yield Outcome("host key", *host_key(connector.destination))
            except HostKeyError as exc:  # the connection's own verdict on the key
                connects = Outcome("connects", FAIL, "refused by the host key check")
                yield connects
                yield Outcome("host key", FAIL, _first_line(exc))
            except CorralError as exc:  # no connection: what known_hosts says means nothing
                connects = Outcome("connects", FAIL, _first_line(exc))
                yield connects
                yield Outcome("host key", SKIP, "not connected")
            if connects.status == FAIL:
                for name, _ in checks:
                    yield Outcome(name, SKIP, "not connected")
                return
        for name, check in checks:
            yield self.attempt(name, check)

    def plan(self, launcher: Launcher) -> list[tuple[str, Callable[[], tuple[str, str]]]]:
        """The checks after the connection, by name."""
        from corral.launchers.slurm import SlurmLauncher

        checks: list[tuple[str, Callable[[], tuple[str, str]]]] = [
            ("python", lambda: self.python(launcher))
        ]
        if isinstance(launcher, SlurmLauncher):
            slurm = launcher
            checks += [
                ("sbatch", lambda: self.sbatch(slurm)),
                ("sacct", lambda: self.sacct(slurm)),
                ("partitions", lambda: self.partitions(slurm)),
                ("accounts", lambda: self.accounts(slurm)),
            ]
        checks += [
            ("workdir", lambda: self.workdir(launcher)),
            ("disk", lambda: self.disk(launcher)),
        ]
        return checks

    @staticmethod
    def attempt(name: str, check: Callable[[], tuple[str, str]]) -> Outcome:
        """Run ``check``; a CorralError it raises is a failure."""
        try:
            return Outcome(name, *check())
        except CorralError as exc:
            return Outcome(name, FAIL, _first_line(exc))

    @staticmethod
    def run_on(connector: Connector, argv: list[str]) -> Result:
        """Run ``argv`` where the host's jobs run."""
        return connector.run(argv, timeout=TIMEOUT)

    # --- the checks --------------------------------------------------------------------------

    def connect(self, connector: SSHConnector) -> tuple[str, str]:
        """Open the SSH connection (one command)."""
        started = time.monotonic()
        self.run_on(connector, ["true"])
        dest = connector.destination
        alias = f" (ssh alias {dest.alias!r})" if dest.alias != dest.hostname else ""
        return PASS, f"{dest}{alias} in {time.monotonic() - started:.2f} s"

    def python(self, launcher: Launcher) -> tuple[str, str]:
        """The job python runs ``corral.host.agent`` with a corral of this client's version."""
        from corral._version import __version__
        from corral.launchers.remote import Host

        host = getattr(launcher, "host", None)
        if isinstance(host, Host) and host.remote:
            try:
                info = host.agent.version()
            except SubmissionError as exc:
                if exc.returncode is None:
                    raise
                tail = exc.stderr.strip().splitlines()[-1:] or ["(no output)"]
                return FAIL, (
                    f"{host.python} -m corral.host.agent version on {host}: exit code "
                    f"{exc.returncode}: {tail[0]} (python = an interpreter with corral "
                    f"{__version__})"
                )
        else:
            argv = [launcher.python, "-m", "corral.host.agent", "version"]
            result = launcher.connector.run(argv, input="{}", timeout=TIMEOUT)
            if not result.ok:
                command = f"{launcher.python} -m corral.host.agent version"
                return FAIL, f"{command} failed: {_tail(result)}"
            info = json.loads(result.stdout)
        have = f"{info['executable']}: Python {info['python']}, corral {info['corral']}"
        if info["corral"].split(".")[:2] != __version__.split(".")[:2]:
            return FAIL, f"{have}; this client has corral {__version__}: install the same version"
        return PASS, have

    def sbatch(self, launcher: SlurmLauncher) -> tuple[str, str]:
        """sbatch answers; squeue and scancel exist."""
        result = self.run_on(launcher.connector, ["sbatch", "--version"])
        if not result.ok:
            hint = ""
            if result.returncode == 127:
                hint = " (if a login profile sets PATH: ssh = { host = ..., login_shell = true })"
            return FAIL, f"sbatch --version: exit code {result.returncode}: {_tail(result)}{hint}"
        script = 'for c in squeue scancel; do command -v "$c" >/dev/null || echo "$c"; done'
        missing = self.run_on(launcher.connector, ["sh", "-c", script]).stdout.split()
        if missing:
            return FAIL, f"{result.stdout.strip()}, but no {', '.join(missing)}"
        return PASS, f"{result.stdout.strip()}; squeue and scancel found"

    def sacct(self, launcher: SlurmLauncher) -> tuple[str, str]:
        """Accounting works (else the launcher polls with squeue: a warning)."""
        result = self.run_on(launcher.connector, ["sacct", "-n", "-X", "-j", "1", "-o", "JobID"])
        if result.ok and "disabled" not in result.stderr:
            return PASS, "accounting works: job states come from sacct"
        return WARN, f"no accounting ({_tail(result)}): job states come from squeue"

    def partitions(self, launcher: SlurmLauncher) -> tuple[str, str]:
        """The cluster's partitions, with their nodes and GPUs by type (one ``sinfo``); the
        configured one exists and is up."""
        try:
            found = launcher.partitions()
        except SubmissionError as exc:
            return FAIL, _first_line(exc)
        listing = ", ".join(p.describe() for p in found.values())
        wanted = launcher.options.partition
        if wanted is None:
            return PASS, listing or "(none)"
        for partition in wanted.split(","):
            if partition not in found:
                hint = did_you_mean(partition, found)
                return FAIL, f"partition {partition!r} not found{hint}; available: {listing}"
            if found[partition].available != "up":
                state = found[partition].available
                return FAIL, f"partition {partition!r} is {state}; all: {listing}"
        return PASS, f"using {wanted}; all: {listing}"

    def accounts(self, launcher: SlurmLauncher) -> tuple[str, str]:
        """The user's accounts (associations); the configured one is among them."""
        user = launcher.host.user
        argv = ["sacctmgr", "-n", "-P", "show", "assoc", "where", f"user={user}", "format=Account"]
        result = self.run_on(launcher.connector, argv)
        wanted = launcher.options.account
        if not result.ok:
            what = f"cannot verify account {wanted!r}" if wanted else "cannot list accounts"
            return WARN, f"{what}: sacctmgr: {_tail(result)}"
        accounts = sorted({a.strip() for a in result.stdout.split() if a.strip()})
        if wanted is not None and wanted not in accounts:
            return FAIL, (
                f"account {wanted!r} is not one of {user}'s: {', '.join(accounts) or '(none)'}"
            )
        if not accounts:
            return WARN, f"no association for {user}: the cluster may refuse jobs"
        using = f"using {wanted}; " if wanted else ""
        return PASS, f"{using}{user}'s: {', '.join(accounts)}"

    def _facts(self, launcher: Launcher) -> list[str]:
        if self._workdir is None:
            from corral.launchers.remote import Host

            host = getattr(launcher, "host", None)
            workdir = host.workdir if isinstance(host, Host) else None
            path = workdir or str(self.workspace.resolve())
            result = self.run_on(launcher.connector, ["sh", "-c", WORKDIR_SCRIPT, "sh", path])
            lines = result.stdout.splitlines()
            if not result.ok or len(lines) < 4:
                raise CheckFailed(f"cannot inspect workdir {path}: {_tail(result)}")
            self._workdir = lines
        return self._workdir

    def workdir(self, launcher: Launcher) -> tuple[str, str]:
        """The workdir exists and is writable, or can be created."""
        directory, existing, writable = self._facts(launcher)[:3]
        if writable != "1":
            return FAIL, f"{directory}: {existing} is not a writable directory"
        if existing == directory:
            return PASS, f"{directory} (writable)"
        return PASS, f"{directory} (created on first use, in writable {existing})"

    def disk(self, launcher: Launcher) -> tuple[str, str]:
        """Free space on the workdir's filesystem."""
        fields = self._facts(launcher)[3].split()
        try:
            total, free = int(fields[1]) * 1024, int(fields[3]) * 1024
        except (IndexError, ValueError):
            raise CheckFailed(f"cannot read df's output: {' '.join(fields)!r}") from None
        where = f"on {fields[5]}" if len(fields) > 5 else ""
        detail = f"{human(free)} free of {human(total)} {where}".rstrip()
        if free < self.min_free:
            return FAIL, f"{detail}; less than --min-free {human(self.min_free)}"
        return PASS, detail


@cli.command("check")
@click.argument("host")
@workspace_path_option(
    "Its corral.toml is read, and it is the workdir of local launchers "
    "(default: $CORRAL_WORKSPACE, else ./workspace)."
)
@click.option(
    "--min-free",
    default="1G",
    show_default=True,
    help="Free space the workdir needs (K, M, G, T).",
)
@click.pass_context
def check_command(ctx: click.Context, host: str, workspace: Path | None, min_free: str) -> None:
    """Check that HOST (from the hosts file) is ready for jobs: one PASS/FAIL line per check.

    Exits with 1 when a check fails (WARN does not fail). With -q, prints failures only.
    """
    from corral.app.plugins import Plugins
    from corral.cli.options import WORKSPACE_ENV
    from corral.connectors.ssh import close_all
    from corral.core.units import parse_size

    if workspace is None:
        workspace = Path(os.environ.get(WORKSPACE_ENV) or "workspace")

    try:
        threshold = parse_size(min_free)
    except ValueError as exc:
        raise click.BadParameter(f"{min_free!r}: expected {exc}", param_hint="--min-free") from None
    quiet = bool((ctx.obj or {}).get("quiet"))
    doctor = Doctor(host, workspace=workspace, min_free=threshold, plugins=Plugins())
    counts = dict.fromkeys((PASS, WARN, FAIL, SKIP), 0)
    try:
        for outcome in doctor.run():
            counts[outcome.status] += 1
            if quiet and outcome.status != FAIL:
                continue
            status = click.style(f"{outcome.status:<4}", fg=COLORS[outcome.status])
            click.echo(f"{status}  {outcome.check:<10}  {outcome.detail}")
    finally:
        close_all()
    words = {PASS: "passed", WARN: "warned", FAIL: "failed", SKIP: "skipped"}
    summary = ", ".join(f"{n} {words[s]}" for s, n in counts.items() if n)
    if not quiet:
        click.echo(f"{host}: {summary}")
    if counts[FAIL]:
        ctx.exit(1)
