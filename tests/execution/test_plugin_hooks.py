"""Job hooks of plugins and launchers by registered name, through real local jobs."""

from __future__ import annotations

import pytest

from corral import ConfigError, JobFailedError, PluginError, experiment
from corral.app.plugins import Plugins
from corral.core.job import FailureReason, JobState
from corral.launchers.local import LocalLauncher
from corral.plugins.markers import hookimpl
from tests.execution.tasks import Echo, Fail, Record, read_log
from tests.execution.test_local import max_concurrency


class Resourceful:
    """Gives Records named ``gpu…`` a GPU and those named ``wide…`` two CPUs."""

    @hookimpl
    def corral_prepare_job(self, job, launcher):
        if isinstance(job.task, Record) and job.task.name.startswith("gpu"):
            job.resources.gpus = 1
        if isinstance(job.task, Record) and job.task.name.startswith("wide"):
            job.resources.cpus = 2


def test_prepare_job_gives_a_job_a_gpu_slot_it_sees(workspace, log):
    plugins = Plugins(entry_points=False, extra=(Resourceful(),))
    with experiment(workspace, "gpu", LocalLauncher(cpu_slots=2, gpu_slots=1), plugins=plugins):
        Record(name="gpu", log=log).submit()
        Record(name="cpu", log=log).submit()
    cuda = {r["name"]: r["cuda"] for r in read_log(log)}
    assert cuda == {"gpu": "0", "cpu": None}


def test_prepare_job_cpus_take_slots(workspace, log):
    plugins = Plugins(entry_points=False, extra=(Resourceful(),))
    with experiment(workspace, "wide", LocalLauncher(cpu_slots=2), plugins=plugins):
        for i in range(3):
            Record(name=f"wide{i}", sleep=0.3, log=log).submit()
    records = read_log(log)
    assert len(records) == 3
    assert max_concurrency(records) == 1  # each takes both CPU slots


def test_prepare_job_resources_are_checked_against_the_launcher(workspace, log):
    plugins = Plugins(entry_points=False, extra=(Resourceful(),))
    with pytest.raises(ConfigError, match="asks cpus=1, gpus=1; the local launcher has"):
        with experiment(workspace, "nogpu", LocalLauncher(cpu_slots=1), plugins=plugins):
            Record(name="gpu", log=log).submit()
    assert read_log(log) == []


class Finished:
    """Records every job that reaches a final state, with its failure reason."""

    def __init__(self) -> None:
        self.finished: list[tuple[str, JobState, FailureReason | None]] = []

    @hookimpl
    def corral_job_finished(self, job, state):
        reason = job.failure.reason if job.failure is not None else None
        self.finished.append((job.type_id.rsplit(".", 1)[-1], state, reason))


def test_job_finished_is_called_for_a_failed_job(workspace, log):
    plugin = Finished()
    with pytest.raises(JobFailedError):
        with experiment(workspace, "failed", plugins=Plugins(entry_points=False, extra=(plugin,))):
            Record(name="ok", log=log).submit()
            Fail(how="raise", log=log).submit()
    assert sorted(plugin.finished, key=lambda f: f[0]) == [
        ("Fail", JobState.FAILED, FailureReason.FAILED),
        ("Record", JobState.DONE, None),
    ]


def test_submit_by_launcher_name_builds_that_launcher_from_the_options(workspace, log):
    default = LocalLauncher(cpu_slots=3)
    with experiment(workspace, "by-name", default) as xp:
        for i in range(3):
            Record(name=f"one{i}", sleep=0.3, log=log).submit(launcher="local", cpu_slots=1)
        Echo(text="default").submit()
        launchers = {type(job.task).__name__ + getattr(job.task, "name", ""): job.launcher
                     for job in xp.jobs.values()}
    built = launchers["Recordone0"]
    assert isinstance(built, LocalLauncher)
    assert built is not default
    assert built.cpu_slots == 1
    assert launchers["Recordone1"] is built  # the same options give the same launcher
    assert launchers["Recordone2"] is built
    assert launchers["Echo"] is default
    assert max_concurrency(read_log(log)) == 1  # the one-slot launcher ran them


class Batch:
    @hookimpl
    def corral_register_launchers(self, registry):
        registry.add(BatchLauncher)


class BatchLauncher(LocalLauncher):
    name = "batch"


def test_submit_by_unknown_launcher_name_lists_the_registered_names(workspace, log):
    plugins = Plugins(entry_points=False, extra=(Batch(),))
    with pytest.raises(PluginError) as e:
        with experiment(workspace, "unknown", plugins=plugins):
            Record(name="x", log=log).submit(launcher="lcoal", cpu_slots=1)
    assert str(e.value) == "unknown launcher 'lcoal' (did you mean 'local'?); known: batch, local, slurm, ssh"
    assert read_log(log) == []


def test_unknown_launcher_option_lists_the_valid_ones(tmp_path):
    from corral import ConfigError, experiment

    with experiment(tmp_path / "ws", "opts") as xp:
        with pytest.raises(ConfigError, match=r"launcher 'local': unknown option 'cpu'; valid: .*cpu_slots"):
            xp.resolve_launcher("local", cpu=1)
