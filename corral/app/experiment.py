"""``experiment()``: the context in which tasks are submitted — the composition root.

This module wires what the core leaves open: the plugins (:mod:`corral.app.plugins`), the
launcher choice (:mod:`corral.app.choose`: names, hosts files, pools), the progress display
(:mod:`corral.ops.progress`) and, for ``corral why``, :mod:`corral.ops.explain`. Nothing below
it imports it: ``Task.submit`` finds the running experiment through
:mod:`corral.core.context`.

::

    with experiment("./workspace", "sweep") as xp:
        outputs = Learn(model=Model()).submit()
    # leaving the block waits for every job (raises JobFailedError if any failed)

With ``dry_run=True`` (or ``CORRAL_DRY_RUN=1``) nothing is written, started or recorded:
each job's script, submit command and environment changes are printed instead
(:mod:`corral.core.dryrun`).

Each submission records the project's code in a snapshot (:mod:`corral.core.snapshot`) and
the job's provenance (:mod:`corral.core.provenance`), once per set of import roots.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

from corral.app.choose import Choice, Launchers
from corral.app.completion import Completions
from corral.app.interrupt import (
    Terminated,
    debug,
    exit_code,
    one_line_errors,
    sigterm_as_interrupt,
    stopped_early,
)
from corral.app.plugins import Plugins
from corral.core import context, provenance
from corral.core.config import walk
from corral.core.dryrun import Changes, PlannedJob, dry_run_from_env, explain_from_env, plan
from corral.core.generated import check_claims, claim
from corral.core.hooks import collect_hooks
from corral.core.identity import identifier, type_id
from corral.core.job import Job, JobState, Resources
from corral.core.pool import FirstFit, LauncherPool
from corral.core.provenance import Recorder, check_option
from corral.core.resumable import ResumableTask
from corral.core.scheduler import Scheduler
from corral.core.task import Dep, Task, attach_init_tasks, dependencies
from corral.core.workspace import Workspace
from corral.errors import ConfigError, ExperimentStopped, FailedJob, JobFailedError
from corral.ops import runstop
from corral.ops.runline import run_line

if TYPE_CHECKING:
    from corral.core.launcher import Launcher
    from corral.plugins.manager import PluginManager

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")


def current_experiment() -> Experiment | None:
    """The experiment whose block is running, if any."""
    xp = context.current()
    return xp if isinstance(xp, Experiment) else None


class Experiment:
    """A run of an experiment: its workspace, launchers, jobs and record."""

    def __init__(
        self,
        workdir: str | os.PathLike[str],
        name: str,
        launcher: Choice | str | None = None,
        *,
        plugins: PluginManager | None = None,
        dry_run: bool = False,
        snapshot: bool | list[str | os.PathLike[str]] = True,
    ) -> None:
        if not isinstance(name, str) or not _NAME.match(name):
            raise ConfigError(
                f"experiment name {name!r}: letters, digits, '_', '.', '-' "
                "(not starting with '.' or '-')"
            )
        if not isinstance(workdir, str | os.PathLike):
            raise ConfigError(
                f"experiment workdir: expected a path (str or Path), got {type(workdir).__name__}"
            )
        self.workspace = Workspace(workdir)
        self.recorder = Recorder(self.workspace, check_option(snapshot))
        """The code snapshots and git states of the submissions, each taken once."""
        self.name = name
        self.dry_run = dry_run
        self.planned: list[PlannedJob] = []
        """The jobs of a dry run, in the order they were submitted."""
        self.plugins = plugins if plugins is not None else Plugins()
        self.launchers = Launchers(self.plugins, self.workspace.root)
        self.default_launcher = self.launchers.resolve("local" if launcher is None else launcher)
        self.jobs: dict[str, Job] = {}
        self.scheduler = Scheduler(self.workspace, on_finished=self._finished)
        self.completions = Completions()
        self.run_id = time.strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}"
        self._record = None
        self._client: Any = None
        if dry_run:
            return
        _check_directory(self.workspace.root)
        runs = self.workspace.experiments / name / "runs"
        try:
            runs.mkdir(parents=True, exist_ok=True)
            (self.workspace.jobs).mkdir(parents=True, exist_ok=True)
            self._record = open(  # noqa: SIM115  (kept open for the run, closed by close())
                runs / f"{self.run_id}.jsonl", "a", encoding="utf-8", buffering=1
            )
            (self.workspace.experiments / name / "latest").write_text(self.run_id + "\n")
            self._client = runstop.hold_client(self.workspace, name, self.run_id)
        except OSError as exc:
            raise ConfigError(
                f"workspace {self.workspace.root} is not writable: {exc.strerror or exc}"
            ) from exc
        ws, run = self.workspace, self.run_id
        self.scheduler.halt = lambda: runstop.stop_requested(ws, name, run)
        self.scheduler.on_halt = lambda: runstop.answer(ws, name, run)

    @property
    def workspace_root(self) -> Path:
        """The workspace directory (what ``@cache`` uses in the client)."""
        return self.workspace.root

    def resolve_launcher(self, launcher: Choice | str | None, **options: Any) -> Choice:
        """A launcher (or pool) from an instance, a registered name (with options), a host
        name, or None for the experiment's launcher."""
        if launcher is None:
            if options:
                raise ConfigError("launcher options need a launcher name")
            return self.default_launcher
        return self.launchers.resolve(launcher, **options)

    def submit(self, task: Task, launcher: Choice | str | None = None, **options: Any) -> Any:
        """Schedule ``task``; return its ``task_outputs``.

        :param launcher: a launcher, a pool, a registered launcher type or a declared host
            (default: the experiment's launcher).
        :param options: resources of the job (``cpus``, ``gpus``, ``gpu_type``, ``mem``,
            ``time``, ``nodes``, ``tasks_per_node``, ``torchrun``: see
            :class:`~corral.core.job.Resources`), and options that build a launcher of the
            registered type ``launcher`` (``cpu_slots=2``, ``partition="gpu"``).
        """
        if not isinstance(task, Task):
            raise ConfigError(f"submit() takes a Task, got {type(task).__name__}")
        init_tasks = options.pop("init_tasks", None)
        max_retries = options.pop("max_retries", None)
        if init_tasks is not None:
            attach_init_tasks(task, init_tasks)
        _check_retries(task, max_retries)
        ident = identifier(task)
        tid = type_id(task)
        key = f"{tid}/{ident}"
        check_claims(task)
        job = self.jobs.get(key)
        if job is None:
            asked = {k: options.pop(k) for k in list(options) if k in Resources.FIELDS}
            resolved = self.resolve_launcher(launcher, **options)
            deps = []
            for dep in dependencies(task):
                dep_job = self.jobs.get(f"{type_id(dep)}/{identifier(dep)}")
                if dep_job is None:
                    raise ConfigError(
                        f"{type(task).__qualname__} depends on {type(dep).__qualname__} "
                        f"{identifier(dep)[:12]}, which was not submitted: submit it first"
                    )
                deps.append(dep_job)
            if not self.dry_run:
                _check_importable(task)
            pool = resolved if isinstance(resolved, LauncherPool) else None
            shown = pool.representative(deps, self.workspace) if pool is not None else resolved
            assert not isinstance(shown, LauncherPool)
            job = Job(task, ident, tid, self._directory(shown, tid, ident), shown, deps)
            job.max_retries = max_retries
            if not self.dry_run:
                self._record_code(job)
            # Members of a first-fit pool differ: what a job does not ask comes from the one
            # that runs it, known only once its resources chose it.
            fit = isinstance(pool, FirstFit)
            job.resources = Resources() if fit else shown.default_resources()
            job.resources.update(**asked)
            before_hooks = job.resources.to_json()
            changes = Changes() if self.dry_run else None
            for hook in collect_hooks(walk(task)):
                with _watch(changes, f"submit hook {type(hook).__name__}", job):
                    hook.process(job, shown)
            with _watch(changes, "plugins", job):
                self.plugins.prepare_job(job, shown)
            if pool is not None:  # the one choice of a member, now that resources are known
                member = pool.choose(job, self.workspace)
                if member is not shown:
                    job.launcher = member
                    job.directory = self._directory(member, tid, ident)
                if fit:
                    _complete(job, member.default_resources(), set(asked), before_hooks)
            here = job.launcher.location(self.workspace)
            for dep_job in deps:
                if dep_job.launcher.location(self.workspace) != here:
                    raise ConfigError(
                        f"{type(task).__qualname__} on {here} depends on {dep_job.name} on "
                        f"{dep_job.launcher.location(self.workspace)}: a task must run where "
                        "the outputs it depends on are"
                    )
            job.check_environ()
            job.resources.check()
            job.launcher.check(job)
            self.jobs[key] = job
            if changes is not None:
                self._plan(job, changes)
            else:
                self._write_record(job)
                self.scheduler.add(job)
        task.__dict__["__taskdir__"] = job.directory
        claim(task)
        if max_retries is not None:
            job.max_retries = max_retries
        if not self.dry_run:
            for callback in task.__dict__.get("_corral_on_completed", ()):
                self.completions.add(job, callback)
        return task.task_outputs(Dep(task))

    def on_completed(self, task: Task, callback: Any) -> None:
        """Call ``callback(task)`` once the job of the submitted ``task`` is done."""
        job = self.jobs.get(f"{type_id(task)}/{identifier(task)}")
        if job is not None and not self.dry_run:
            self.completions.add(job, callback)

    def _directory(self, launcher: Launcher, type_id: str, identifier: str) -> Path:
        if self.dry_run:  # the same path, found without connecting where possible
            return launcher.planned_root(self.workspace) / "jobs" / type_id / identifier
        return launcher.job_directory(self.workspace, type_id, identifier)

    def _record_code(self, job: Job) -> None:
        job.snapshot, roots = self.recorder.record(job.task)
        job.provenance = provenance.base(
            experiment=self.name, run=self.run_id, roots=roots, snap=job.snapshot,
            submitted=time.time(),
        )

    def _write_record(self, job: Job) -> None:
        assert self._record is not None
        entry = {"type_id": job.type_id, "identifier": job.identifier}
        entry["launcher"] = job.launcher.name
        self._record.write(json.dumps(entry) + "\n")

    def _plan(self, job: Job, changes: Changes) -> None:
        planned = plan(job, self.workspace, changes)
        self.planned.append(planned)
        if not explain_from_env():
            print(planned.render(len(self.planned)) + "\n", flush=True)
        elif planned.state != "done":  # `corral why SCRIPT`: why each job would run
            from corral.ops.explain import explain

            going = job.launcher.submitted([job])  # a done match is done elsewhere
            print(explain(job.task, self.workspace, going_to=going).render() + "\n", flush=True)

    def wait(self) -> None:
        """Wait for every job submitted so far; raise JobFailedError if any failed."""
        if self.dry_run:
            return
        self.scheduler.wait()
        if self.scheduler.halted is not None:
            raise ExperimentStopped(self._stopped(self.scheduler.halted))
        failed = [j for j in self.jobs.values() if j.state is JobState.FAILED]
        if failed:
            raise JobFailedError([_failed_job(j, str(self.workspace.root)) for j in failed])
        self.completions.wait()

    def _stopped(self, why: str) -> str:
        jobs = list(self.jobs.values())
        unstarted = sum(1 for j in jobs if j.state is JobState.FAILED and j.handle is None)
        done = sum(1 for j in jobs if j.state is JobState.DONE)
        ended = len(jobs) - unstarted - done
        return (
            f"{why} (run {self.run_id}): {unstarted} job(s) never started, {ended} stopped or "
            f"failed, {done} done; `corral xp ls {shlex.quote(self.name)} -w "
            f"{shlex.quote(str(self.workspace.root))}` shows them"
        )

    def _finished(self, job: Job) -> None:
        self.plugins.job_finished(job, job.state)
        self.completions.finished(job)

    def close(self) -> None:
        """Stop scheduling, close the record, release the snapshots."""
        self.scheduler.stop()
        self.completions.close()
        self.recorder.close()
        if self._record is not None:
            self._record.close()
        if self._client is not None:
            runstop.release(self._client)
            self._client = None


def _complete(
    job: Job, defaults: Resources, asked: set[str], before_hooks: dict[str, Any]
) -> None:
    """Give ``job`` its launcher's defaults for what neither ``submit()`` nor a hook set."""
    for name in Resources.FIELDS:
        if name not in asked and getattr(job.resources, name) == before_hooks[name]:
            setattr(job.resources, name, getattr(defaults, name))


def _watch(changes: Changes | None, source: str, job: Job) -> Any:
    return nullcontext() if changes is None else changes.watch(source, job)


def _check_directory(root: Path) -> None:
    """Refuse a workspace that is, or would be created under, something not a directory."""
    for path in (root, *root.parents):
        if path.exists():
            if not path.is_dir():
                raise ConfigError(f"workspace {root}: {path} is not a directory")
            return


def _check_importable(task: Task) -> None:
    for config in walk(task):
        qualname = type(config).__qualname__
        if "<locals>" in qualname:
            function = qualname.split(".<locals>")[0]
            raise ConfigError(
                f"{qualname} is defined inside the function {function}(): the job process "
                "rebuilds a task by importing its classes from their module, and a class "
                "made by a function call has no name there; define it at the top level of "
                f"{type(config).__module__} (a dry run, `corral dry-run SCRIPT`, works as is)"
            )


def _check_retries(task: Task, max_retries: Any) -> None:
    if max_retries is None:
        return
    name = type(task).__qualname__
    if not isinstance(task, ResumableTask):
        raise ConfigError(
            f"{name}.submit(max_retries={max_retries!r}): only a ResumableTask is submitted "
            "again after a time limit or a preemption; for other failures see the "
            "launcher's retry budget (docs/reliability.md)"
        )
    if not isinstance(max_retries, int) or isinstance(max_retries, bool) or max_retries < 0:
        raise ConfigError(f"{name}.submit(max_retries={max_retries!r}): expected an int >= 0")


def _wait(xp: Experiment, name: str, *, show: bool) -> None:
    """Wait for the experiment's jobs; with ``show``, their progress (live on a terminal,
    log lines otherwise), then the run's line, failed or not."""
    if not show:
        xp.wait()
        return
    from corral.ops.progress import Progress

    try:
        with Progress(lambda: list(xp.jobs.values()), title=name,
                      workspace=str(xp.workspace.root)):
            xp.wait()
    except JobFailedError:
        print(run_line(name, list(xp.jobs.values())), file=sys.stderr, flush=True)
        raise
    print(run_line(name, list(xp.jobs.values())), file=sys.stderr, flush=True)


def _failed_job(job: Job, workspace: str) -> FailedJob:
    failure = job.failure
    return FailedJob(
        identifier=job.identifier,
        task=job.type_id,
        reason=failure.reason.value if failure else "failed",
        message=failure.message if failure else "",
        stderr=str(job.stderr),
        workspace=workspace,
    )


@contextmanager
def experiment(
    workdir: str | os.PathLike[str],
    name: str,
    launcher: Choice | str | None = None,
    wait: bool = True,
    *,
    plugins: PluginManager | None = None,
    dry_run: bool = False,
    progress: bool | None = None,
    snapshot: bool | list[str | os.PathLike[str]] = True,
) -> Iterator[Experiment]:
    """Run an experiment in the workspace ``workdir``; tasks submitted inside run on
    ``launcher`` (default: the local launcher).

    Leaving the block waits for every job and raises :class:`~corral.errors.JobFailedError`
    if any failed. With ``wait=False`` it starts every job and returns: jobs go on without
    the client, waiting for their dependencies themselves, and a later run picks them up.

    ``dry_run`` (forced by ``CORRAL_DRY_RUN=1``, as ``corral dry-run`` sets it) prints
    what each job would be and does nothing: no job directory, no run record, no job started.

    ``progress`` shows the jobs while the block waits for them (see :mod:`corral.ops.progress`):
    a live display on a terminal, log lines otherwise, and a last line that says what the
    run did ("submitted 40 jobs (SLURM array 1234 on ...), 12 already done"); ``False``
    prints nothing but errors.

    ``snapshot`` (on by default) copies the project's code at submission into the
    workspace's ``code/`` store, and jobs import from that copy, so that editing the project
    afterwards changes nothing for jobs already submitted. ``False`` runs the live code; a
    list of paths (directories on ``sys.path``, or files) copies those instead.
    """
    if os.environ.get("CORRAL_JOB_DIR"):
        raise ConfigError(
            "experiment() was called inside a job: guard the experiment script's code "
            "with `if __name__ == '__main__':`"
        )
    one_line_errors()
    dry = dry_run or dry_run_from_env()
    xp = Experiment(workdir, name, launcher, plugins=plugins, dry_run=dry, snapshot=snapshot)
    try:
        with context.submitting_to(xp), sigterm_as_interrupt():
            yield xp
            if dry:
                done = sum(p.state == "done" for p in xp.planned)
                print(
                    f"dry run of {name!r}: {len(xp.planned)} job(s)"
                    + (f", {done} done already" if done else "")
                    + "; nothing was written or started",
                    flush=True,
                )
            elif wait:
                _wait(xp, name, show=progress is not False)
            else:
                xp.scheduler.detach()
                if progress is not False:
                    where = shlex.quote(str(xp.workspace.root))
                    follow = f"follow them with: corral xp wait {shlex.quote(name)} -w {where}"
                    line = run_line(name, list(xp.jobs.values()), follow=follow)
                    print(line, file=sys.stderr, flush=True)
    except KeyboardInterrupt as exc:  # Ctrl-C, SIGTERM: one line, not a traceback
        if debug():
            raise
        terminated = isinstance(exc, Terminated)
        line = stopped_early(name, xp.workspace.root, xp.jobs.values(), terminated)
        print(line, file=sys.stderr, flush=True)
        raise SystemExit(exit_code(exc)) from None
    finally:
        xp.close()
