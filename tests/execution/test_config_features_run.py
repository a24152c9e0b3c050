"""Config and submission features run for real on the local launcher: generated paths of
nested configs, init tasks, on_completed, submit(max_retries=), TaskCancelled, task classes
defined in a function."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from corral import (
    CallbackFailed,
    ConfigError,
    JobFailedError,
    Param,
    Task,
    copyconfig,
    experiment,
)
from corral.core.job import FailureReason, JobState
from corral.core.workspace import Workspace
from corral.launchers.local import LocalLauncher
from corral.testing import make_job, run_until_final
from tests.execution.model_tasks import (
    CleansUp,
    Encoder,
    Main,
    Model,
    Score,
    Train,
    Warmup,
)
from tests.execution.resumable_tasks import Steps


def local(slots: int = 2) -> LocalLauncher:
    return LocalLauncher(cpu_slots=slots)


# --- generated paths of nested configs ----------------------------------------------------------


def test_nested_generated_paths_are_final_in_the_client_and_the_same_in_the_job(tmp_path):
    model = Model(encoder=Encoder(), decoder=Encoder(size=8))
    train = Train(model=model, extra=[Encoder(size=1), Encoder(size=2)])
    assert str(model.weights).startswith("__unsubmitted__")
    with experiment(tmp_path / "ws", "nested", launcher=local(), progress=False):
        train.submit()
        job_dir = train.__taskdir__
        # known as soon as submit() returns, before the job ran
        assert model.weights == job_dir / "out/model/weights.pt"
        assert model.encoder.vocab == job_dir / "out/model/encoder/vocab.txt"
        assert model.decoder is not None
        assert model.decoder.vocab == job_dir / "out/model/decoder/vocab.txt"
        assert train.extra[1].vocab == job_dir / "out/extra/1/vocab.txt"
    seen = json.loads((job_dir / "seen.json").read_text())
    assert seen == {
        "weights": str(model.weights),
        "vocab": str(model.encoder.vocab),
        "extra0": str(train.extra[0].vocab),
        "extra1": str(train.extra[1].vocab),
        "decoder": str(model.decoder.vocab),
    }
    assert len(set(seen.values())) == 5  # no two nested configs share a path
    assert model.weights.read_text() == "weights"  # the client reads what the job wrote


def test_a_downstream_task_reads_the_nested_path_of_its_dependency(tmp_path):
    train = Train(model=Model(encoder=Encoder()))
    with experiment(tmp_path / "ws", "downstream", launcher=local(), progress=False):
        train.submit()
        score = Score(train=train)
        score.submit()
    assert (score.__taskdir__ / "score.txt").read_text() == "weights"


def test_a_config_with_generated_paths_used_by_two_tasks_is_an_error_naming_both(tmp_path):
    model = Model(encoder=Encoder())
    first, second = Train(model=model, seed=1), Train(model=model, seed=2)
    with experiment(tmp_path / "ws", "shared", launcher=local(), progress=False) as xp:
        first.submit()
        with pytest.raises(ConfigError) as caught:
            second.submit()
        assert len(xp.jobs) == 1  # nothing of the refused submission was kept
        # a copy is the way out, and the same task submitted again is no conflict
        Train(model=copyconfig(model), seed=2).submit()
        Train(model=model, seed=1).submit()
    message = str(caught.value)
    assert "\n" not in message
    assert "Model has generated paths and is used by two tasks: Train" in message
    assert f"Train {first.__taskdir__.name[:12]} (at model)" in message
    assert "copyconfig()" in message


# --- init tasks ----------------------------------------------------------------------------------


def test_init_tasks_run_in_the_job_before_the_task_in_order(tmp_path):
    with experiment(tmp_path / "ws", "init", launcher=local(), progress=False):
        main = Main()
        main.submit(init_tasks=[Warmup(step=1), Warmup(step=2)])
        other = Main()
        other.submit(init_tasks=[Warmup(step=2), Warmup(step=1)])
        plain = Main()
        plain.submit()
    assert (main.__taskdir__ / "order.log").read_text() == "warmup 1\nwarmup 2\nmain\n"
    assert (other.__taskdir__ / "order.log").read_text() == "warmup 2\nwarmup 1\nmain\n"
    assert (plain.__taskdir__ / "order.log").read_text() == "main\n"
    assert len({main.__taskdir__, other.__taskdir__, plain.__taskdir__}) == 3
    assert (main.__taskdir__ / "out/init/0/note.txt").read_text() == "warmup 1"


# --- on_completed -------------------------------------------------------------------------------


def test_on_completed_runs_when_done_and_when_already_done(tmp_path):
    calls: list[str] = []

    def run() -> None:
        with experiment(tmp_path / "ws", "callbacks", launcher=local(), progress=False):
            before = Main(seed=1)
            before.on_completed(lambda t: calls.append(f"before {t.seed}"))
            before.submit()
            after = Main(seed=2)
            after.submit()
            after.on_completed(lambda t: calls.append(f"after {t.seed}"))
            after.on_completed(lambda: calls.append("no argument"))

    run()
    assert sorted(calls) == ["after 2", "before 1", "no argument"]
    calls.clear()
    run()  # both jobs already done: called all the same
    assert sorted(calls) == ["after 2", "before 1", "no argument"]


def test_a_failing_callback_is_reported_and_the_job_stays_done(tmp_path):
    def broken(task: Task) -> None:
        raise ValueError("no disk")

    with pytest.raises(CallbackFailed, match=r"an on_completed callback failed: .*broken of "
                       r"Main/[0-9a-f]{12}: ValueError: no disk"):
        with experiment(tmp_path / "ws", "broken", launcher=local(), progress=False) as xp:
            task = Main(seed=3)
            task.on_completed(broken)
            task.submit()
    (job,) = xp.jobs.values()
    assert job.state is JobState.DONE


def test_callbacks_never_run_in_a_dry_run(tmp_path, capsys):
    calls: list[object] = []
    with experiment(tmp_path / "ws", "dry", launcher=local(), dry_run=True):
        task = Main(seed=4)
        task.on_completed(calls.append)
        task.submit()
    assert calls == []


# --- submit(max_retries=) ------------------------------------------------------------------------


def test_submit_max_retries_sets_the_budget_of_a_resumable_job(tmp_path):
    log = tmp_path / "log"
    with experiment(tmp_path / "ws", "retries", launcher=local(1), progress=False) as xp:
        # one step per attempt, and a last attempt that finds all 6 done: 6 retries
        Steps(steps=6, stop_after=1, log=str(log)).submit(max_retries=6)  # class default: 3
    (job,) = xp.jobs.values()
    assert job.state is JobState.DONE and job.retries == 6
    with pytest.raises(JobFailedError, match="timeout"):
        with experiment(tmp_path / "ws", "fewer", launcher=local(1), progress=False):
            Steps(steps=7, stop_after=1, log=str(log)).submit(max_retries=1)


def test_max_retries_is_refused_for_a_task_that_cannot_resume(tmp_path):
    with experiment(tmp_path / "ws", "bad-retries", launcher=local(), progress=False):
        with pytest.raises(ConfigError, match=r"Main.submit\(max_retries=3\): only a "
                           "ResumableTask is submitted again"):
            Main(seed=5).submit(max_retries=3)
        with pytest.raises(ConfigError, match=r"expected an int >= 0"):
            Steps(steps=1, log="x").submit(max_retries=-1)


# --- TaskCancelled -------------------------------------------------------------------------------


def _wait_for(path: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


@pytest.mark.parametrize("swallow", [False, True], ids=["re-raised", "swallowed"])
def test_a_cancelled_task_cleans_up_before_the_job_is_marked_killed(tmp_path, swallow):
    workspace = Workspace(tmp_path / "ws")
    launcher = LocalLauncher(cpu_slots=1, slots_dir=tmp_path / "slots", cancel_grace=10.0)
    job = make_job(CleansUp(token=f"cancel-{swallow}", swallow=swallow), launcher, workspace)
    launcher.start([job], workspace)
    _wait_for(job.directory / "started")
    launcher.cancel([job])
    assert (job.directory / "cleaned.txt").read_text() == "SIGTERM: cancelled by SIGTERM"
    state, failure = run_until_final(launcher, job)
    assert state is JobState.FAILED
    assert failure is not None and failure.reason is FailureReason.KILLED
    assert failure.message == "killed by SIGTERM"


# --- task classes defined in a function ---------------------------------------------------------


def test_a_task_defined_in_a_function_dry_runs_and_a_real_run_says_why_not(tmp_path, capsys):
    class Local(Task):
        n: Param[int] = 1

        def execute(self) -> None:
            pass

    with experiment(tmp_path / "ws", "local-dry", launcher=local(), dry_run=True) as xp:
        Local(n=2).submit()
    assert len(xp.planned) == 1
    assert "Local" in capsys.readouterr().out
    with experiment(tmp_path / "ws", "local-real", launcher=local(), progress=False) as xp:
        with pytest.raises(ConfigError) as caught:
            Local(n=2).submit()
        assert xp.jobs == {}
    message = str(caught.value)
    assert message.startswith(
        "test_a_task_defined_in_a_function_dry_runs_and_a_real_run_says_why_not.<locals>.Local "
        "is defined inside the function test_a_task_defined_in_a_function_dry_runs_and_a_real"
    )
    assert "define it at the top level of tests.execution.test_config_features_run" in message
    assert not (tmp_path / "ws" / "jobs").exists() or not any((tmp_path / "ws" / "jobs").iterdir())
