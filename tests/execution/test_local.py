"""The local launcher and the scheduler, driven in-process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from corral import ConfigError, JobFailedError, SubmitHook, experiment, identifier
from corral.app.plugins import Plugins
from corral.core import procs
from corral.core.identity import type_id
from corral.core.job import FailureReason, JobState
from corral.core.workspace import LAUNCH, final_state, state_dir
from corral.launchers.local import LocalLauncher
from corral.plugins.markers import hookimpl
from tests.execution.tasks import (
    After,
    Echo,
    Fail,
    GpuRecord,
    Leaf,
    Lists,
    Part,
    Record,
    WithParts,
    read_log,
)

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
    with experiment(workspace, "slots", launcher=LocalLauncher(cpu_slots=2)):
        for i in range(6):
            Record(name=f"s{i}", sleep=0.4, log=log).submit()
    records = read_log(log)
    assert len(records) == 6
    assert max_concurrency(records) == 2


def test_gpu_slots_set_distinct_cuda_devices(workspace, log):
    with experiment(workspace, "gpus", launcher=LocalLauncher(cpu_slots=4, gpu_slots=2)):
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
        with experiment(workspace, "nogpu", launcher=LocalLauncher(cpu_slots=1)):
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
    # the error names the command that shows the stderr, wherever the job ran
    assert f"(stderr: corral jobs log --err {failed.identifier[:12]} -w {workspace})" in str(e.value)
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

    with pytest.raises(ConfigError, match="defined inside the function .*: the job process rebuilds a task by importing"):
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
        Record(name="n", log=log).submit(launcher="local", cpu_slots=1)
    with pytest.raises(ConfigError, match="unknown host 'nope'; declared hosts: .*; "
                                          "launcher types: local"):
        with experiment(workspace, "named", launcher="nope"):
            pass
    with pytest.raises(PluginError, match=r"unknown launcher 'lcoal' \(did you mean 'local'\?\); known: local"):
        with experiment(workspace, "named"):
            Record(name="n", log=log).submit(launcher="lcoal", cpu_slots=1)
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


def test_sub_config_generated_path_parents_exist_and_maintaskdir_is_set(workspace, log):
    with experiment(workspace, "parts"):
        before = Record(name="before", log=log)
        before.submit()
        leaves = [Leaf(label="leaf")]
        task = WithParts(part=Part(label="part", leaves=leaves), before=before)
        task.submit()
    job_dir = task.__taskdir__
    # each nested config under out/, at its place in the tree
    assert (job_dir / "out/part/sub/deep/file.txt").read_text() == "part"
    assert (job_dir / "out/part/leaves/0/leaf/a/b/leaf.txt").read_text() == "leaf"
    assert task.part.leaves[0].file == job_dir / "out/part/leaves/0/leaf/a/b/leaf.txt"
    # the sub-task's generated paths are in its own job
    assert [p.name for p in (job_dir / "out").iterdir()] == ["part"]
    seen = json.loads((job_dir / "maintaskdirs.json").read_text())
    assert seen == {"part": str(job_dir), "leaf": str(job_dir), "before": str(job_dir)}


def test_submitted_list_and_dict_params_cannot_change_before_or_inside_the_job(workspace):
    with experiment(workspace, "lists"):
        task = Lists(values=[1, 2], table={"a": ["x"]})
        task.submit()
        # params.json is written later, by the scheduler thread: the values must not move
        with pytest.raises(ConfigError, match="Lists.values: cannot modify, the config is sealed"):
            task.values.append(3)
        with pytest.raises(ConfigError, match="Lists.table: cannot modify, the config is sealed"):
            task.table["a"].append("y")
    written = json.loads((task.__taskdir__ / "lists.json").read_text())
    assert written["values"] == [1, 2] and written["table"] == {"a": ["x"]}
    assert "Lists.table: cannot modify, the config is sealed" in written["refused"]


@pytest.mark.parametrize("whose", ["sleep", "this test process"])
def test_a_live_pid_with_another_start_time_is_not_reattached(workspace, log, whose):
    """A launch.json naming a live process that is not the job's (the pid was reused):
    the job is run, not re-attached to that process."""
    sleeper = subprocess.Popen(["sleep", "60"]) if whose == "sleep" else None
    try:
        pid = sleeper.pid if sleeper is not None else os.getpid()
        start = procs.start_time(pid)
        assert start is not None
        task = Record(name="reused", log=log)
        job_dir = workspace / "jobs" / type_id(task) / identifier(task)
        state_dir(job_dir).mkdir(parents=True)
        handle = {"pid": pid, "start": start - 1, "boot": procs.boot_id()}
        record = {"launcher": "local", "handle": handle, "host": socket.gethostname(),
                  "time": time.time()}
        (state_dir(job_dir) / LAUNCH).write_text(json.dumps(record))
        assert procs.handle_alive({**handle, "start": start})  # the same handle, if it were ours
        assert not procs.handle_alive(handle)
        # wait=False: a wrongly re-attached job would never finish; fail, do not hang
        with experiment(workspace, "reused", wait=False):
            Record(name="reused", log=log).submit()
        deadline = time.monotonic() + 30
        while final_state(job_dir) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert final_state(job_dir) == (JobState.DONE, None)
        assert [r["name"] for r in read_log(log)] == ["reused"]
        launch = json.loads((state_dir(job_dir) / LAUNCH).read_text())
        assert launch["handle"]["pid"] != pid
        assert sleeper is None or sleeper.poll() is None  # left alone
    finally:
        if sleeper is not None:
            sleeper.kill()
            sleeper.wait()


def test_local_launcher_default_cpu_slots_is_the_number_of_cores(monkeypatch):
    assert LocalLauncher().cpu_slots == (os.cpu_count() or 1)
    monkeypatch.setattr(os, "cpu_count", lambda: 3)
    launcher = LocalLauncher()
    assert launcher.cpu_slots == 3 and launcher.slots.cpus == 3
    assert LocalLauncher(cpu_slots=5).cpu_slots == 5


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


def test_a_job_whose_start_was_never_recorded_is_seen_running_not_failed(workspace, log,
                                                                         tmp_path):
    launcher = LocalLauncher(cpu_slots=2, slots_dir=tmp_path / "slots")
    with experiment(workspace, "orphan", launcher=launcher, wait=False) as xp:
        Record(name="orphan", sleep=1.5, log=log).submit()
    (job,) = xp.jobs.values()
    run_lock = state_dir(job.directory) / "run.lock"
    deadline = time.monotonic() + 30
    while not procs.handle_alive(json.loads(run_lock.read_text() or "null")
                                 if run_lock.exists() else None):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    # as if the client had been killed between starting the job and writing its launch record
    (state_dir(job.directory) / LAUNCH).unlink()
    with experiment(workspace, "orphan", launcher=launcher) as again:
        Record(name="orphan", sleep=1.5, log=log).submit()
    (rerun,) = again.jobs.values()
    assert rerun.state is JobState.DONE  # the second process found it running and left
    assert [r["name"] for r in read_log(log)] == ["orphan"]


def test_a_job_killed_by_a_signal_runs_no_dependent_and_a_rerun_runs_only_it_and_them(tmp_path):
    from tests.execution.rerun import check, fail_then_rerun

    check(fail_then_rerun(tmp_path, None, "sigkill"), "sigkill", "killed")


def test_xp_wait_inside_the_block_lets_the_client_read_results_and_raises_for_failures(
    workspace, log
):
    with experiment(workspace, "stages") as xp:
        first = Record(name="first", sleep=0.3, log=log)
        first.submit()
        xp.wait()
        seen = first.output.read_text()  # its results are there once wait() returns
        Record(name=f"{seen}-then", log=log).submit()
    assert [r["name"] for r in read_log(log)] == ["first", "first-then"]

    with pytest.raises(JobFailedError) as left:
        with experiment(workspace, "stages-failing") as xp:
            Fail(how="raise", log=log).submit()
            with pytest.raises(JobFailedError) as waited:
                xp.wait()
            assert [f.reason for f in waited.value.failures] == ["failed"]
    assert [f.reason for f in left.value.failures] == ["failed"]  # leaving the block says so too
