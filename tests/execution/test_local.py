"""The local launcher and the scheduler, driven in-process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from corral import ConfigError, JobFailedError, SubmitHook, experiment, identifier
from corral.core.job import FailureReason
from corral.core.workspace import final_state
from corral.launchers.local import LocalLauncher
from corral.plugins.manager import Plugins
from corral.plugins.markers import hookimpl
from tests.execution.tasks import After, Echo, Fail, GpuRecord, Record, read_log

NASTY = "a b 'c' \"d\" $(touch {pwned}) `touch {pwned}` ; touch {pwned} \\ \n next line\t$HOME"


def max_concurrency(records: list[dict]) -> int:
    events = sorted([(r["start"], 1) for r in records] + [(r["end"], -1) for r in records])
    level = peak = 0
    for _, delta in events:
        level += delta
        peak = max(peak, level)
    return peak


def test_rerun_skips_done_jobs(workspace, log):
    for _ in range(2):
        with experiment(workspace, "rerun"):
            first = Record(name="a", log=log)
            first.submit()
            After(before=first, log=log).submit()
    assert [r["name"] for r in read_log(log)] == ["a", "after"]


def test_same_identity_twice_is_one_job(workspace, log):
    with experiment(workspace, "twice") as xp:
        Record(name="x", log=log).submit()
        Record(name="x", log=log).submit()
        assert len(xp.jobs) == 1
    assert len(read_log(log)) == 1


def test_slots_are_never_exceeded(workspace, log):
    with experiment(workspace, "slots", launcher=LocalLauncher(cpus=2)):
        for i in range(6):
            Record(name=f"s{i}", sleep=0.4, log=log).submit()
    records = read_log(log)
    assert len(records) == 6
    assert max_concurrency(records) == 2


def test_gpu_slots_set_distinct_cuda_devices(workspace, log):
    with experiment(workspace, "gpus", launcher=LocalLauncher(cpus=4, gpus=2)):
        for i in range(4):
            GpuRecord(name=f"g{i}", sleep=0.4, log=log).submit()
    records = read_log(log)
    assert sorted({r["cuda"] for r in records}) == ["0", "1"]
    for a in records:  # two jobs overlapping in time never share a device
        for b in records:
            if a is not b and a["start"] < b["end"] and b["start"] < a["end"]:
                assert a["cuda"] != b["cuda"]


def test_job_asking_more_than_the_launcher_has_is_refused(workspace, log):
    with pytest.raises(ConfigError, match="asks cpus=1, gpus=1; the local launcher has"):
        with experiment(workspace, "nogpu", launcher=LocalLauncher(cpus=1)):
            GpuRecord(name="g", log=log).submit()


@pytest.mark.parametrize(
    ("how", "reason", "message"),
    [
        ("raise", FailureReason.FAILED, "ValueError: bad value 42"),
        ("exit", FailureReason.FAILED, "SystemExit: 3"),
        ("sigterm", FailureReason.KILLED, "killed by SIGTERM"),
        ("sigkill", FailureReason.KILLED, "killed by SIGKILL"),
    ],
)
def test_failure_reasons(workspace, log, how, reason, message):
    with pytest.raises(JobFailedError) as e:
        with experiment(workspace, "fail"):
            task = Fail(how=how, log=log)
            task.submit()
    (failed,) = e.value.failures
    assert failed.reason == reason.value
    assert message in failed.message
    assert failed.identifier == identifier(task)
    assert failed.stderr == str(task.__taskdir__ / "stderr")
    assert str(task.__taskdir__ / "stderr") in str(e.value)
    if how != "sigkill":  # SIGKILL leaves no marker: the client saw the signal
        final = final_state(task.__taskdir__)
        assert final is not None
        assert final[1].reason is reason


def test_exception_traceback_goes_to_stderr(workspace, log):
    with pytest.raises(JobFailedError):
        with experiment(workspace, "tb"):
            task = Fail(how="raise", log=log)
            task.submit()
    assert "Traceback" in (task.__taskdir__ / "stderr").read_text()
    failed = json.loads((task.__taskdir__ / ".corral" / "failed").read_text())
    assert failed == {"reason": "failed", "message": "ValueError: bad value 42", "exit_code": 1}


def test_failed_dependency_is_not_run_and_a_rerun_reruns_failures(workspace, log):
    with pytest.raises(JobFailedError) as e:
        with experiment(workspace, "deps"):
            bad = Fail(how="raise", log=log)
            bad.submit()
            # a config depends on `bad` by using it as a param
            dependent = Echo(text="never")
            dependent_after = After(before=Record(name="r", log=log), log=log)
            del dependent, dependent_after
            child = FailChild(parent=bad, log=log)
            child.submit()
    reasons = sorted((f.task.rsplit(".", 1)[-1], f.reason) for f in e.value.failures)
    assert reasons == [("Fail", "failed"), ("FailChild", "dependency")]
    assert [r["name"] for r in read_log(log)] == ["fail-raise"]
    assert json.loads((child.__taskdir__ / ".corral" / "failed").read_text())["reason"] == (
        "dependency"
    )
    with pytest.raises(JobFailedError):
        with experiment(workspace, "deps"):
            Fail(how="raise", log=log).submit()
    assert [r["name"] for r in read_log(log)] == ["fail-raise", "fail-raise"]


def test_rerun_of_failed_job_runs_it_again_and_keeps_done_ones(workspace, log):
    with pytest.raises(JobFailedError):
        with experiment(workspace, "mixed"):
            Record(name="ok", log=log).submit()
            Fail(how="exit", log=log).submit()
    with pytest.raises(JobFailedError):
        with experiment(workspace, "mixed"):
            Record(name="ok", log=log).submit()
            Fail(how="exit", log=log).submit()
    assert sorted(r["name"] for r in read_log(log)) == ["fail-exit", "fail-exit", "ok"]


class set_nasty_env(SubmitHook):
    def __init__(self, value):
        self.value = value

    def spec(self):
        return self.value

    def process(self, job, launcher):
        job.environ["CORRAL_TEST_VALUE"] = self.value


PWNED = Path("/tmp/corral-test-pwned")


@set_nasty_env(NASTY.format(pwned=PWNED))
class NastyEcho(Echo):
    pass


def test_hostile_param_and_env_values_round_trip_and_execute_nothing(workspace):
    PWNED.unlink(missing_ok=True)
    value = NASTY.format(pwned=PWNED)
    with experiment(workspace, "nasty"):
        task = NastyEcho(text=value)
        task.submit()
    echoed = json.loads((task.__taskdir__ / "echo.json").read_text())
    assert echoed == {"text": value, "env": value}
    assert not PWNED.exists()


def test_a_class_defined_in_a_function_is_refused_at_submit(workspace, log):
    class Local(Record):
        pass

    with pytest.raises(ConfigError, match="defined inside a function.*cannot import it"):
        with experiment(workspace, "locals"):
            Local(name="l", log=log).submit()


def test_submit_outside_an_experiment_is_a_clear_error(log):
    with pytest.raises(ConfigError, match=r"Record.submit\(\) needs an experiment"):
        Record(name="x", log=log).submit()


def test_depending_on_an_unsubmitted_task_is_a_clear_error(workspace, log):
    with pytest.raises(ConfigError, match="depends on Record .* which was not submitted"):
        with experiment(workspace, "unsubmitted"):
            After(before=Record(name="x", log=log), log=log).submit()


def test_launcher_by_registered_name_and_bad_names(workspace, log):
    from corral import PluginError

    with experiment(workspace, "named", launcher="local") as xp:
        assert isinstance(xp.default_launcher, LocalLauncher)
        Record(name="n", log=log).submit(launcher="local", cpus=1)
    with pytest.raises(PluginError, match="unknown launcher 'nope'; known: local"):
        with experiment(workspace, "named", launcher="nope"):
            pass
    with pytest.raises(ConfigError, match="experiment name 'a/b'"):
        with experiment(workspace, "a/b"):
            pass


def test_experiment_record_lists_the_jobs_of_each_run(workspace, log):
    with experiment(workspace, "record"):
        task = Record(name="r", log=log)
        task.submit()
    xp_dir = workspace / "experiments" / "record"
    run = (xp_dir / "latest").read_text().strip()
    lines = [json.loads(x) for x in (xp_dir / "runs" / f"{run}.jsonl").read_text().splitlines()]
    assert lines == [
        {"type_id": "tests.execution.tasks.Record", "identifier": identifier(task),
         "launcher": "local"}
    ]


def test_error_inside_the_block_does_not_wait(workspace, log):
    with pytest.raises(RuntimeError, match="boom"):
        with experiment(workspace, "boom"):
            Record(name="slow", sleep=0.2, log=log).submit()
            raise RuntimeError("boom")


def test_generated_path_parent_directories_exist(workspace, log):
    with experiment(workspace, "gen"):
        task = Record(name="g", log=log)
        task.submit()
    assert (task.__taskdir__ / "out" / "result.txt").read_text() == "g"
    assert Path(read_log(log)[0]["taskdir"]) == task.__taskdir__


from corral import Meta, Param, Task  # noqa: E402
from tests.execution.tasks import Fail as _Fail  # noqa: E402


class FailChild(Task):
    parent: Param[_Fail]
    log: Meta[Path]

    def execute(self) -> None:
        raise AssertionError("must not run")


class EnvironmentPlugin:
    """A plugin that adds a variable to every job and records finished jobs."""

    def __init__(self):
        self.finished = []

    @hookimpl
    def corral_prepare_job(self, job, launcher):
        job.environ["CORRAL_TEST_VALUE"] = f"from plugin for {launcher.name}"
        job.resources.cpus = 1

    @hookimpl
    def corral_job_finished(self, job, state):
        self.finished.append((job.type_id, state.value))


def test_prepare_job_hook_changes_the_environment_seen_in_the_job(workspace):
    plugin = EnvironmentPlugin()
    with experiment(workspace, "plugin", plugins=Plugins(extra=(plugin,))):
        task = Echo(text="x")
        task.submit()
    echoed = json.loads((task.__taskdir__ / "echo.json").read_text())
    assert echoed == {"text": "x", "env": "from plugin for local"}
    assert plugin.finished == [("tests.execution.tasks.Echo", "done")]


def test_prepare_job_runs_after_the_class_submit_hooks(workspace):
    plugin = EnvironmentPlugin()
    with experiment(workspace, "plugin-order", plugins=Plugins(extra=(plugin,))):
        task = NastyEcho(text="y")  # its class hook sets CORRAL_TEST_VALUE first
        task.submit()
    assert json.loads((task.__taskdir__ / "echo.json").read_text())["env"] == (
        "from plugin for local"
    )
