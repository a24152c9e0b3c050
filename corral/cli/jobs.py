"""``corral jobs``: list, inspect, follow, kill, remove and clean the jobs of a workspace.

A job is named by a prefix of its identity (``corral jobs show 3fa2``), unique in the
workspace, optionally after its task (``Learn/3fa2``).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from corral.app.plugins import Plugins
from corral.cli import cli
from corral.cli.options import print_table, workspace_option
from corral.core.script import parse_job_script
from corral.core.workspace import ATTEMPTS, Workspace, read_json
from corral.ops.inventory import (
    STATES,
    JobInfo,
    find_job,
    format_age,
    list_jobs,
    parse_since,
)


@cli.group("jobs")
def jobs_group() -> None:
    """The jobs of a workspace."""


def job_rows(jobs: list[JobInfo]) -> list[list[str]]:
    """One table row per job: identity, task, launcher, host, state, SLURM id, age."""
    now = time.time()
    return [
        [
            job.short,
            job.task,
            job.launcher or "-",
            job.label or job.host or "-",
            job.reason,
            job.slurm_id or "-",
            format_age(job.age(now)),
        ]
        for job in jobs
    ]


JOB_HEADERS = ("ID", "TASK", "LAUNCHER", "HOST", "STATE", "SLURM", "AGE")


@jobs_group.command("ls")
@click.option(
    "--state",
    "states",
    multiple=True,
    type=click.Choice([s.value for s in STATES]),
    help="Only jobs in this state (repeatable).",
)
@click.option("--since", default=None, help="Only jobs launched since: 2h, 30m, 1d or an ISO date.")
@click.option("--xp", "xp_name", default=None, help="Only the jobs of this experiment (any run).")
@click.option("--task", "task_name", default=None,
              help="Only the jobs of this task (class name or full type id).")
@click.option("--refresh", is_flag=True,
              help="Ask the hosts of remote jobs not known final (one round trip per host) "
              "and record what they answer.")
@workspace_option
def ls_command(
    workspace: Workspace,
    states: tuple[str, ...],
    since: str | None,
    xp_name: str | None,
    task_name: str | None,
    refresh: bool,
) -> None:
    """List jobs, oldest first (remote jobs show their last known state unless --refresh),
    then how many there are by state (on stderr)."""
    cutoff = parse_since(since) if since is not None else None
    jobs = list_jobs(workspace, states=None if refresh else states or None, since=cutoff)
    if xp_name is not None:
        from corral.ops.inventory import read_experiment

        members = {j.identifier for run in read_experiment(workspace, xp_name).runs
                   for j in run.jobs}
        jobs = [j for j in jobs if j.identifier in members]
    if task_name is not None:
        jobs = _of_task(jobs, task_name, workspace)
    if refresh:
        jobs, _ = _refreshed(workspace, jobs)
        if states:
            jobs = [j for j in jobs if j.state in states]
    if not jobs:
        filtered = states or since or xp_name or task_name
        click.echo(f"no jobs in {workspace.root}" + (" matching" if filtered else ""))
        return
    print_table(JOB_HEADERS, job_rows(jobs))
    counts = Counter(j.state.value for j in jobs)
    by_state = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
    click.echo(f"{len(jobs)} job{'s' if len(jobs) != 1 else ''}: {by_state}", err=True)


def _of_task(jobs: list[JobInfo], name: str, workspace: Workspace) -> list[JobInfo]:
    """The jobs of the task ``name``; a task no job of the workspace has is an error that
    names the tasks there are."""
    found = [j for j in jobs if name in (j.task, j.type_id)]
    if not found:
        from corral.errors import ConfigError, did_you_mean
        from corral.ops.inventory import job_dirs

        type_ids = {t for t, _, _ in job_dirs(workspace)}
        tasks = sorted({t.rsplit(".", 1)[-1] for t in type_ids})
        if tasks and name not in type_ids and name not in tasks:
            raise ConfigError(
                f"no job of task {name!r}{did_you_mean(name, tasks)}; tasks: {', '.join(tasks)}"
            )
    return found


def _refreshed(workspace: Workspace, jobs: list[JobInfo]) -> tuple[list[JobInfo], bool]:
    """``jobs`` as their hosts see them now (what they answer is recorded), and whether
    they answered; a host out of reach leaves its jobs at their last known state."""
    from corral.errors import CorralError
    from corral.ops import control

    errors: list[CorralError] = []
    try:
        fresh = control.refresh(workspace, jobs, Plugins(), errors=errors)
    except CorralError as exc:  # a launcher that cannot be rebuilt here, say
        errors, fresh = [exc], jobs
    for error in errors:
        click.echo(f"corral: warning: {error}; its jobs show their last known state", err=True)
    return fresh, not errors


@jobs_group.command("show")
@click.argument("job_id")
@workspace_option
def show_command(workspace: Workspace, job_id: str) -> None:
    """Params, paths, script and environment of a job (a remote job's state asked of its
    host)."""
    job = find_job(workspace, job_id)
    asked = False
    if job.remote and not job.final:
        (job,), asked = _refreshed(workspace, [job])
    where = f"{job.host}:{job.directory}" if job.remote else job.directory
    facts = [
        ("job", job.name),
        ("identity", job.identifier),
        ("task", job.type_id),
        ("state", job.reason + (" (last known)" if job.remote and not job.final and not asked
                                else "")),
    ]
    if job.failure is not None and job.failure.message:
        facts.append(("message", job.failure.message))
    facts += [
        ("launcher", job.launcher or "-"),
        ("host", f"{job.label} ({job.host})" if job.label else job.host or "-"),
        ("slurm id", job.slurm_id or "-"),
        ("directory", where),
    ]
    if job.remote:
        facts.append(("local", str(job.local_dir)))
    facts += [("stdout", job.log_path()), ("stderr", job.log_path(stderr=True))]
    if job.time is not None:
        stamp = datetime.fromtimestamp(job.time).isoformat(sep=" ", timespec="seconds")
        facts.append(("launched", f"{stamp} ({format_age(job.age())} ago)"))
    earlier = _attempts(job)
    if earlier:
        ended = ", ".join(f"{i}: {a.get('reason', '?')}" for i, a in enumerate(earlier, 1))
        facts.append(("attempts", f"{len(earlier) + 1} (earlier ones ended: {ended})"))
    for key, value in facts:
        click.echo(f"{key + ':':<11}{value}")
    click.echo("\nparams:")
    click.echo(_params_text(job))
    click.echo("\nprovenance:")
    click.echo(_provenance_text(job))
    try:
        script = job.script_path.read_text(encoding="utf-8")
    except OSError:
        click.echo(f"\n(no job.sh at {job.script_path})")
        return
    info = parse_job_script(script)
    click.echo("\nenvironment (set by submit hooks, plugins and the launcher):")
    for name, value in sorted(info.environ.items()):
        click.echo(f"  {name}={value}")
    if not info.environ:
        click.echo("  (none)")
    if info.secrets is not None:
        names = _secret_names(job.script_path.parent / info.secrets)
        listed = f" {', '.join(names)}" if names else ""
        click.echo(f"  secret variables{listed}: sourced from {info.secrets} (values not shown)")
    click.echo(f"\njob.sh ({job.script_path}):")
    click.echo(script, nl=False)


def _attempts(job: JobInfo) -> list[dict[str, Any]]:
    """How the earlier attempts of a job submitted again ended (pointer or job directory)."""
    recorded = (job.pointer or {}).get("attempts")
    if recorded is None and not job.remote:
        recorded = read_json(job.local_dir / ATTEMPTS)
    return [a for a in recorded if isinstance(a, dict)] if isinstance(recorded, list) else []


def _secret_names(path: Path) -> list[str]:
    """The names (never the values) of a secrets file's variables, when it is readable here."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    return [line[7:].split("=", 1)[0] for line in lines if line.startswith("export ")]


def _provenance_text(job: JobInfo) -> str:
    data = read_json(job.provenance_path)
    if not isinstance(data, dict):
        return f"  (none recorded at {job.provenance_path})"
    lines = []
    submitted = data.get("submitted")
    if isinstance(submitted, int | float):
        stamp = datetime.fromtimestamp(submitted).isoformat(sep=" ", timespec="seconds")
        lines.append(f"submitted  {stamp} from {data.get('client', '?')} "
                     f"(experiment {data.get('experiment', '?')}, run {data.get('run', '?')})")
    lines.append(f"corral     {data.get('corral', '?')}, python {data.get('python', '?')}")
    lines.append(f"launcher   {data.get('launcher', '?')} at {data.get('location', '?')}")
    resources = data.get("resources")
    if isinstance(resources, dict):
        shown = " ".join(f"{k}={v}" for k, v in resources.items() if v is not None)
        lines.append(f"resources  {shown}")
    snap = data.get("snapshot")
    lines.append(f"snapshot   {f'code/{snap}' if snap else 'none: the job runs the live code'}")
    for root in data.get("roots") or []:
        if not isinstance(root, dict):
            continue
        commit = root.get("commit")
        state = (f"git {commit[:12]}" + (" (dirty)" if root.get("dirty") else "")
                 if isinstance(commit, str) else "not in git")
        lines.append(f"project    {root.get('path')}: {state}")
    return "\n".join(f"  {line}" for line in lines)


def _params_text(job: JobInfo) -> str:
    try:
        data = json.loads(job.params_path.read_text(encoding="utf-8"))
        objects: list[dict[str, Any]] = data["objects"]
        root = objects[data["root"]]
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return f"  (no readable params.json at {job.params_path})"

    def show(value: Any) -> str:
        if isinstance(value, dict) and "$config" in value:
            entry = objects[value["$config"]]
            inner = ", ".join(f"{k}={show(v)}" for k, v in entry["fields"].items())
            return f"{entry['class']['qualname']}({inner})"
        if isinstance(value, dict) and "$path" in value:
            return str(value["$path"])
        if isinstance(value, dict) and "$generated" in value:
            return str(value["$generated"]["relpath"])
        if isinstance(value, list):
            return "[" + ", ".join(show(v) for v in value) + "]"
        return json.dumps(value)

    lines = [f"  {name} = {show(value)}" for name, value in root["fields"].items()]
    return "\n".join(lines) if lines else "  (none)"


@jobs_group.command("log")
@click.argument("job_id")
@click.option("--follow", "-f", is_flag=True, help="Keep printing as it grows, until the job ends.")
@click.option("--err", is_flag=True, help="The job's stderr rather than its stdout.")
@workspace_option
def log_command(workspace: Workspace, job_id: str, follow: bool, err: bool) -> None:
    """Print a job's stdout (or stderr); remote logs are read over SSH."""
    from corral.ops import control

    job = find_job(workspace, job_id)
    plugins = Plugins()
    if not follow:
        click.echo(control.read_log(job, plugins, stderr=err), nl=False)
        return
    for chunk in control.follow_log(workspace, job, plugins, stderr=err):
        click.echo(chunk, nl=False)
    if job.remote:  # it ended: record how, so that listings stop saying "running"
        _refreshed(workspace, [find_job(workspace, job.identifier)])


@jobs_group.command("kill")
@click.argument("job_ids", nargs=-1, required=True)
@click.option(
    "--grace", default=10.0, show_default=True, help="Seconds between SIGTERM and SIGKILL."
)
@workspace_option
def kill_command(workspace: Workspace, job_ids: tuple[str, ...], grace: float) -> None:
    """Stop jobs: their process groups, on their hosts, or with scancel."""
    from corral.ops import control

    jobs = {j.identifier: j for j in (find_job(workspace, ref) for ref in job_ids)}
    outcome = control.kill(workspace, list(jobs.values()), Plugins(), grace=grace)
    for ident, what in outcome.items():
        click.echo(f"{jobs[ident].name}: {what}")


@jobs_group.command("rm")
@click.argument("job_ids", nargs=-1, required=True)
@workspace_option
def rm_command(workspace: Workspace, job_ids: tuple[str, ...]) -> None:
    """Remove jobs that are over (done, failed, lost), remote ones on their hosts too;
    refused while one runs or a pending job depends on it."""
    from corral.ops.cleanup import remove_jobs

    jobs = {j.identifier: j for j in (find_job(workspace, ref) for ref in job_ids)}
    for ident, what in remove_jobs(workspace, list(jobs.values()), Plugins()).items():
        click.echo(f"{jobs[ident].name}: {what}")


@jobs_group.command("clean")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@workspace_option
def clean_command(workspace: Workspace, yes: bool) -> None:
    """Remove the directories of failed jobs and orphans: lost ones, and ones never started
    (a client killed while starting them; remote ones on their hosts too)."""
    from corral.ops import control

    cleanable = [s for s in STATES if s.cleanable]
    jobs = [
        j for j in list_jobs(workspace, states=cleanable) if j.state != "created" or not j.remote
    ]
    if not jobs:
        click.echo(f"nothing to clean in {workspace.root}")
        return
    print_table(JOB_HEADERS, job_rows(jobs))
    click.echo()
    if not yes and not click.confirm(f"Remove these {len(jobs)} job directories?"):
        click.echo("nothing removed")
        return
    by_id = {j.identifier: j for j in jobs}
    removed = 0
    for ident, what in control.remove(jobs, Plugins()).items():
        removed += what.startswith("removed")
        click.echo(f"{by_id[ident].name}: {what}")
    click.echo(f"{removed} of {len(jobs)} removed")
