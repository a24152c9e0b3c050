"""``corral xp``: the experiments of a workspace, waiting for a run, stopping one."""

from __future__ import annotations

import sys
import time
from collections import Counter
from datetime import datetime
from types import SimpleNamespace
from typing import NamedTuple

import click

from corral.app.plugins import Plugins
from corral.cli import cli
from corral.cli.options import print_table, workspace_option
from corral.core.job import Failure, FailureReason, JobState
from corral.core.workspace import Workspace
from corral.errors import ConnectorError, SubmissionError, log_command
from corral.ops import runstop
from corral.ops.inventory import (
    STATES,
    ExperimentInfo,
    JobInfo,
    RunInfo,
    format_age,
    list_experiments,
    read_experiment,
)


@cli.group("xp")
def xp_group() -> None:
    """The experiments of a workspace."""


def summary(counts: Counter[JobState]) -> str:
    """``3 done, 1 failed`` in the order of :data:`~corral.ops.inventory.STATES`."""
    parts = [f"{counts[s]} {s}" for s in STATES if counts.get(s)]
    return ", ".join(parts) if parts else "no jobs"


@xp_group.command("ls")
@click.option("--runs", "all_runs", is_flag=True, help="Every run, not only the latest.")
@workspace_option
def ls_command(workspace: Workspace, all_runs: bool) -> None:
    """List experiments: their runs and the states of their jobs."""
    experiments = list_experiments(workspace)
    if not experiments:
        click.echo(f"no experiments in {workspace.root}")
        return
    now = time.time()
    rows = []
    for xp in experiments:
        runs = xp.runs if all_runs else [r for r in [xp.latest] if r is not None]
        for run in runs:
            started = run.started
            rows.append(
                [
                    xp.name,
                    run.run_id + (" *" if run.run_id == xp.latest_id and all_runs else ""),
                    str(len(xp.runs)),
                    str(len(run.jobs)),
                    summary(run.counts),
                    format_age(None if started is None else now - started),
                ]
            )
        if not runs:
            rows.append([xp.name, "-", "0", "0", "no runs", "-"])
    print_table(("EXPERIMENT", "RUN", "RUNS", "JOBS", "STATES", "AGE"), rows)


def _run(xp: ExperimentInfo, run_id: str | None) -> RunInfo:
    from corral.errors import ConfigError

    if run_id is None:
        run = xp.latest
        if run is None:
            raise ConfigError(f"experiment {xp.name!r} has no runs")
        return run
    for run in xp.runs:
        if run.run_id.startswith(run_id):
            return run
    known = ", ".join(r.run_id for r in xp.runs[-5:])
    raise ConfigError(f"experiment {xp.name!r} has no run {run_id!r} (latest runs: {known})")


run_option = click.option("--run", "run_id", default=None, help="A run id (default: the latest).")


class _Where(NamedTuple):
    """A job's launcher as the display labels it: its name, and where when remote."""

    name: str
    connector: SimpleNamespace | None


class _Shown:
    """A job of the run as the live display shows it, brought up to date at each poll."""

    def __init__(self, job: JobInfo) -> None:
        self.update(job)

    def update(self, job: JobInfo) -> None:
        """Take the state ``job`` was read in."""
        self.name = job.name
        self.identifier = job.identifier
        self.stderr = job.log_path(stderr=True)
        self.launcher = _Where(
            job.launcher or "local",
            SimpleNamespace(destination=job.host) if job.remote else None,
        )
        failure = job.failure
        if failure is None and job.state is JobState.LOST:
            failure = Failure(FailureReason.LOST, f"the job is {job.state}")
        self.failure = failure  # before the state: the display reads the state first
        self.state = job.state.progress


@xp_group.command("wait")
@click.argument("name")
@run_option
@click.option("--interval", default=2.0, show_default=True, help="Seconds between polls.")
@click.option("--timeout", default=None, type=float, help="Give up after this many seconds.")
@click.option(
    "--live/--no-live",
    default=None,
    help="The live display (counts by state and launcher, running jobs, failures) rather "
    "than a line per change. Default: on a terminal.",
)
@workspace_option
@click.pass_context
def wait_command(
    ctx: click.Context,
    workspace: Workspace,
    name: str,
    run_id: str | None,
    interval: float,
    timeout: float | None,
    live: bool | None,
) -> None:
    """Wait until every job of an experiment's run (started with wait=False) is final.

    Polls the job directories here and, for remote jobs, their hosts (one agent command
    per host). Exits 1 if some failed, 2 on --timeout.
    """
    from corral.ops import control
    from corral.ops.progress import Progress

    run = _run(read_experiment(workspace, name), run_id)
    jobs = run.jobs
    plugins = Plugins()
    quiet = bool((ctx.find_root().obj or {}).get("quiet"))
    shown = {j.identifier: _Shown(j) for j in jobs}
    display = None
    if not quiet and (live if live is not None else sys.stdout.isatty()):
        from rich.console import Console

        display = Progress(  # on stdout: the display is what this command is for
            lambda: list(shown.values()), title=f"{name} {run.run_id}", live=True,
            console=Console(),
        )
        display.start()
    deadline = None if timeout is None else time.monotonic() + timeout
    last = ""
    try:
        while True:
            try:
                jobs = control.refresh(workspace, jobs, plugins)
            except (ConnectorError, SubmissionError) as exc:  # a host out of reach: try again
                click.echo(f"corral: warning: {exc}", err=True)
            for job in jobs:
                shown[job.identifier].update(job)
            counts = Counter(j.state for j in jobs)
            done = counts[JobState.DONE]
            line = f"{name} {run.run_id}: {done}/{len(jobs)} done ({summary(counts)})"
            if line != last and not quiet and display is None:
                stamp = datetime.now().strftime("%H:%M:%S")
                click.echo(f"[{stamp}] {line}")
                sys.stdout.flush()
                last = line
            # a job not submitted may still be, while the run's client lives
            client = any(j.state is JobState.NOT_SUBMITTED for j in jobs) and runstop.client_alive(
                workspace, name, run.run_id
            )
            if not client and all(j.state.ended for j in jobs):
                break
            if deadline is not None and time.monotonic() >= deadline:
                click.echo(f"timed out after {timeout:g} s", err=True)
                ctx.exit(2)
            time.sleep(interval)
    finally:
        if display is not None:
            display.stop()
    unsubmitted = [j for j in jobs if j.state is JobState.NOT_SUBMITTED]
    failed = [j for j in jobs if j.state not in (JobState.DONE, JobState.NOT_SUBMITTED)]
    for job in failed:
        message = f": {job.failure.message}" if job.failure and job.failure.message else ""
        where = log_command(job.identifier, str(workspace.root))
        click.echo(f"  {job.name} {job.reason}{message} (stderr: {where})")
    if unsubmitted:
        click.echo(
            f"{len(unsubmitted)} job(s) of {name} were never submitted (its client stopped "
            "first): run the experiment script again to submit them"
        )
    if failed or unsubmitted:
        ctx.exit(1)


@xp_group.command("kill")
@click.argument("name")
@run_option
@click.option(
    "--grace", default=10.0, show_default=True, help="Seconds between SIGTERM and SIGKILL."
)
@workspace_option
def kill_command(workspace: Workspace, name: str, run_id: str | None, grace: float) -> None:
    """Stop every job of an experiment's run that is not final yet."""
    from corral.ops import control

    run = _run(read_experiment(workspace, name), run_id)
    said = runstop.request_stop(workspace, name, run.run_id, waiting=click.echo)
    click.echo(f"{name} {run.run_id}: {said}")
    run = _run(read_experiment(workspace, name), run.run_id)  # what it started meanwhile
    active = [j for j in run.jobs if not j.final]
    if not active:
        click.echo(f"{name} {run.run_id}: no job to stop ({summary(run.counts)})")
        return
    by_id = {j.identifier: j for j in active}
    for ident, what in control.kill(workspace, active, Plugins(), grace=grace).items():
        click.echo(f"{by_id[ident].name}: {what}")
