"""The pytest plugin of corral's test kit: fixtures and the launcher conformance suite.

Fixtures: ``corral_plugins`` (a fresh plugin manager), ``corral_workspace`` (a temporary
workspace), ``local_connector``. Subclass :class:`LauncherConformance` and define a
``launcher_factory`` fixture to check that a launcher honours the scheduler's contract.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from corral.core.identity import identifier, type_id
from corral.core.job import FailureReason, Job, JobState
from corral.core.workspace import Workspace

if TYPE_CHECKING:
    from corral.connectors.local import LocalConnector
    from corral.core.launcher import Launcher, Status
    from corral.core.task import Task
    from corral.plugins.manager import PluginManager

__all__ = ["LauncherConformance", "make_job", "run_until_final"]


@pytest.fixture
def corral_plugins() -> PluginManager:
    """A fresh plugin manager (built-ins and installed plugins)."""
    from corral.app.plugins import Plugins

    return Plugins()


@pytest.fixture
def corral_workspace(tmp_path: Path) -> Workspace:
    """A temporary workspace."""
    return Workspace(tmp_path / "corral-workspace")


@pytest.fixture
def local_connector() -> Iterator[LocalConnector]:
    """The local connector."""
    from corral.connectors.local import LocalConnector

    with LocalConnector() as connector:
        yield connector


def make_job(task: Task, launcher: Launcher, workspace: Workspace) -> Job:
    """A job for ``task`` in ``workspace``, as the experiment would build it."""
    ident, tid = identifier(task), type_id(task)
    job = Job(task, ident, tid, launcher.job_directory(workspace, tid, ident), launcher)
    job.resources = launcher.default_resources()
    task.__dict__["__taskdir__"] = job.directory
    return job


def read(launcher: Launcher, path: Path) -> str:
    """A file where the launcher's jobs run (through its connector: it may be remote)."""
    return launcher.connector.read_text(path)


def run_until_final(launcher: Launcher, job: Job, timeout: float = 60.0) -> Status:
    """Poll ``launcher`` until ``job`` is done or failed."""
    deadline = time.monotonic() + timeout
    while True:
        status = launcher.poll([job])[job]
        if status[0].final:
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"{job.name} still {status[0].value} after {timeout} s")
        time.sleep(0.05)


def wait_until_running(launcher: Launcher, job: Job, timeout: float = 30.0) -> None:
    """Poll until the job's own process has started (its run lock is taken)."""
    deadline = time.monotonic() + timeout
    while not launcher.connector.exists(job.directory / ".corral" / "run.lock"):
        if time.monotonic() > deadline:
            raise AssertionError(f"{job.name} did not start within {timeout} s")
        assert launcher.poll([job])[job][0] in (JobState.SUBMITTED, JobState.RUNNING)
        time.sleep(0.05)


class LauncherConformance:
    """The launcher contract, as tests. Subclass it and define ``launcher_factory``."""

    @pytest.fixture
    def launcher_factory(self) -> Callable[[], Launcher]:
        """Return a callable making a new instance of the launcher under test."""
        raise pytest.UsageError("define a `launcher_factory` fixture in your subclass")

    @pytest.fixture
    def launcher(self, launcher_factory: Callable[[], Launcher]) -> Launcher:
        return launcher_factory()

    def test_registered_name(self, launcher: Launcher) -> None:
        assert isinstance(type(launcher).name, str)
        assert type(launcher).name

    def test_submit_poll_finish(self, launcher: Launcher, corral_workspace: Workspace) -> None:
        from corral.testing.tasks import Sleep

        task = Sleep(token="finish")
        job = make_job(task, launcher, corral_workspace)
        (status,) = launcher.start([job], corral_workspace).values()
        assert status[0] in (JobState.SUBMITTED, JobState.RUNNING)
        assert run_until_final(launcher, job) == (JobState.DONE, None)
        assert read(launcher, task.output).startswith("slept 0.0")
        assert launcher.connector.exists(job.directory / ".corral" / "done")
        assert read(launcher, job.directory / "job.sh") == launcher.script_for(job)

    def test_failure_has_a_reason(self, launcher: Launcher, corral_workspace: Workspace) -> None:
        from corral.testing.tasks import Raise

        job = make_job(Raise(message="boom 7"), launcher, corral_workspace)
        launcher.start([job], corral_workspace)
        state, failure = run_until_final(launcher, job)
        assert state is JobState.FAILED
        assert failure is not None
        assert failure.reason is FailureReason.FAILED
        assert "RuntimeError: boom 7" in failure.message

    def test_environment_reaches_the_job(
        self, launcher: Launcher, corral_workspace: Workspace
    ) -> None:
        from corral.testing.tasks import Env

        job = make_job(Env(name="CORRAL_CONFORMANCE"), launcher, corral_workspace)
        job.environ["CORRAL_CONFORMANCE"] = "it's $(here)"
        launcher.start([job], corral_workspace)
        assert run_until_final(launcher, job)[0] is JobState.DONE
        assert read(launcher, job.directory / "env.txt") == "it's $(here)"

    def test_cancel(self, launcher: Launcher, corral_workspace: Workspace) -> None:
        from corral.testing.tasks import Sleep

        job = make_job(Sleep(seconds=60, token="cancel"), launcher, corral_workspace)
        launcher.start([job], corral_workspace)
        wait_until_running(launcher, job)
        launcher.cancel([job])
        state, failure = run_until_final(launcher, job, timeout=30)
        assert state is JobState.FAILED
        assert failure is not None
        assert failure.reason in (FailureReason.KILLED, FailureReason.CANCELLED)

    def test_reattach_from_a_new_launcher_instance(
        self, launcher_factory: Callable[[], Launcher], corral_workspace: Workspace
    ) -> None:
        from corral.testing.tasks import Sleep

        first = launcher_factory()
        task = Sleep(seconds=1.5, token="reattach")
        job = make_job(task, first, corral_workspace)
        first.start([job], corral_workspace)
        wait_until_running(first, job)
        second = launcher_factory()
        again = make_job(Sleep(seconds=1.5, token="reattach"), second, corral_workspace)
        assert second.recover([again])[again] == (JobState.RUNNING, None)
        assert run_until_final(second, again) == (JobState.DONE, None)

    def test_done_job_is_not_started_again(
        self, launcher: Launcher, corral_workspace: Workspace
    ) -> None:
        from corral.testing.tasks import Sleep

        job = make_job(Sleep(token="once"), launcher, corral_workspace)
        launcher.start([job], corral_workspace)
        run_until_final(launcher, job)
        before = read(launcher, job.directory / "output.txt")  # it holds the job's pid
        again = make_job(Sleep(token="once"), launcher, corral_workspace)
        assert launcher.recover([again])[again] == (JobState.DONE, None)
        assert launcher.start([again], corral_workspace)[again] == (JobState.DONE, None)
        assert read(launcher, job.directory / "output.txt") == before

    def test_experiment_with_a_dependency(
        self, launcher: Launcher, corral_workspace: Workspace
    ) -> None:
        from corral.app.experiment import experiment
        from corral.testing.tasks import ReadAfter, Sleep

        with experiment(corral_workspace.root, "conformance", launcher=launcher):
            first = Sleep(seconds=0.2, token="first")
            first.submit()
            second = ReadAfter(before=first)
            second.submit()
        assert read(launcher, second.__taskdir__ / "read.txt") == read(launcher, first.output)

    def test_the_command_line_reaches_its_jobs(
        self,
        launcher: Launcher,
        corral_workspace: Workspace,
        corral_plugins: PluginManager,
    ) -> None:
        """``corral jobs ls --refresh`` and ``corral jobs kill`` rebuild the launcher from the
        workspace's records (``for_recorded``) and call its ``poll`` and ``cancel``."""
        from corral.app.experiment import experiment
        from corral.ops import control
        from corral.ops.inventory import list_jobs
        from corral.testing.tasks import Sleep

        name = type(launcher).name
        plugins = corral_plugins
        if name not in plugins.launchers:  # not installed yet: its own module registers it
            from corral.app.plugins import Plugins

            plugins = Plugins(extra=(sys.modules[type(launcher).__module__],))
        assert name in plugins.launchers, (
            f"launcher {name!r} is not registered by its module nor by an installed plugin "
            "(an entry point in the 'corral' group): `corral jobs` could not rebuild it"
        )
        with experiment(corral_workspace.root, "cli", launcher=launcher, wait=False):
            job = Sleep(seconds=60, token="cli")
            job.submit()
        (found,) = list_jobs(corral_workspace)
        deadline = time.monotonic() + 30
        while True:
            (fresh,) = control.refresh(corral_workspace, [found], plugins)
            if fresh.state is JobState.RUNNING and launcher.connector.exists(
                job.__taskdir__ / ".corral" / "run.lock"
            ):
                break
            assert fresh.state in (JobState.SUBMITTED, JobState.RUNNING), fresh
            assert time.monotonic() < deadline, f"{fresh.name} still {fresh.state} after 30 s"
            time.sleep(0.1)
        outcome = control.kill(corral_workspace, [fresh], plugins, grace=5)
        assert set(outcome) == {fresh.identifier}
        deadline = time.monotonic() + 30
        while not (fresh := control.refresh(corral_workspace, [fresh], plugins)[0]).final:
            assert time.monotonic() < deadline, f"{fresh.name} still {fresh.state} after kill"
            time.sleep(0.1)
        assert fresh.state is JobState.FAILED
        assert fresh.failure is not None
        assert fresh.failure.reason in (FailureReason.KILLED, FailureReason.CANCELLED)
