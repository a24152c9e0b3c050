"""Every snippet of the seed page, run through the real local launcher."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from corral import (
    Config,
    Job,
    Launcher,
    Meta,
    Param,
    SubmitHook,
    Task,
    cache,
    experiment,
    identifier,
    submit_hook_decorator,
)
from corral.core.identity import type_id
from corral.launchers.local import LocalLauncher
from tests.execution.seed_execution import Evaluate, SampledFold, WritingModelLearn
from tests.execution.tasks import WithSub, append_log, read_log
from tests.seed_tasks import Dataset, Documents, Model, ModelLearn, Topics

# --- "Defining a task" -----------------------------------------------------------------------


def test_model_learn_runs_and_writes_its_parameters(workspace):
    with experiment(workspace, "seed"):
        seed_task = ModelLearn(model=Model())
        seed_task.submit()
        learn = WritingModelLearn(model=Model(hidden=7))
        learn.submit()
    assert learn.__taskdir__ == workspace / "jobs" / type_id(learn) / identifier(learn)
    assert learn.parameters == learn.__taskdir__ / "parameters.pth"
    assert learn.parameters.read_bytes() == b"weights of 7"
    assert (seed_task.__taskdir__ / ".corral" / "done").exists()
    assert (learn.__taskdir__ / "params.json").exists()
    assert (learn.__taskdir__ / "job.sh").read_text().startswith("#!/usr/bin/env bash")


# --- "Task outputs and dependencies" ---------------------------------------------------------


def test_random_fold_outputs_feed_a_task_that_starts_after_it(workspace, log):
    source = Dataset(topics=Topics(path="/data/topics"), documents=Documents(path="/data/docs"))
    with experiment(workspace, "seed"):
        fold = SampledFold(dataset=source, log=str(log))
        outputs = fold.submit()
        assert isinstance(outputs, Dataset)
        assert outputs.topics.path == fold.__taskdir__ / "topics.tsv"
        assert outputs.documents is source.documents
        Evaluate(dataset=outputs, log=str(log)).submit()
    records = {r["name"]: r for r in read_log(log)}
    assert records["evaluate"]["topics"] == "q1\tsampled\n"
    assert records["evaluate"]["documents"] == "/data/docs"
    assert records["evaluate"]["start"] >= records["fold"]["end"]


def test_same_identities_in_two_workspaces(tmp_path, log):
    def plan(ws: Path) -> list[str]:
        source = Dataset(topics=Topics(path="/t"), documents=Documents(path="/d"))
        with experiment(ws, "plan", wait=False):
            fold = SampledFold(dataset=source, log=str(log))
            evaluate = Evaluate(dataset=fold.submit(), log=str(log))
            evaluate.submit()
        return [identifier(fold), identifier(evaluate)]

    assert plan(tmp_path / "one") == plan(tmp_path / "two" / "deeper")


# --- "Submit hooks" --------------------------------------------------------------------------


class needs_java(SubmitHook):
    def __init__(self, version: int):
        self.version = version

    def spec(self):
        """Returns a hashable identifier for this hook (so it is only applied once)"""
        return self.version

    def process(self, job: Job, launcher: Launcher):
        """Apply the hook for a given job/launcher"""
        job.environ["JAVA_HOME"] = "THE_JAVA_HOME"
        job.environ["JAVA_VERSION"] = str(self.version)
        job.environ["HOOK_CALLS"] = str(int(job.environ.get("HOOK_CALLS", "0")) + 1)


@needs_java(11)
class IndexCollection(Config):
    name: Param[str] = "robust04"


@needs_java(11)
class Retriever(Config):
    index: Param[IndexCollection]


@submit_hook_decorator
def needs_memory(job: Job, launcher: Launcher, gigabytes: int):
    job.environ["MEMORY_GB"] = str(gigabytes)
    job.resources.mem = f"{gigabytes}G"


@needs_memory(4)
class Search(Task):
    retriever: Param[Retriever]

    def execute(self):
        keys = ("JAVA_HOME", "JAVA_VERSION", "HOOK_CALLS", "MEMORY_GB")
        Path("env.json").write_text(json.dumps({k: os.environ.get(k) for k in keys}))


def test_submit_hooks_reach_the_job_environment_once(workspace):
    with experiment(workspace, "hooks"):
        task = Search(retriever=Retriever(index=IndexCollection()))
        task.submit()
    env = json.loads((task.__taskdir__ / "env.json").read_text())
    assert env == {
        "JAVA_HOME": "THE_JAVA_HOME",
        "JAVA_VERSION": "11",
        "HOOK_CALLS": "1",  # two configs declare needs_java(11): applied once
        "MEMORY_GB": "4",
    }
    assert "export JAVA_HOME=THE_JAVA_HOME" in (task.__taskdir__ / "job.sh").read_text()


def test_hooks_with_different_specs_both_apply():
    from corral.core.config import walk
    from corral.core.hooks import collect_hooks

    @needs_java(17)
    class Other(Config):
        pass

    class Both(Task):
        a: Param[IndexCollection]
        b: Param[Other]

    hooks = collect_hooks(walk(Both(a=IndexCollection(), b=Other())))
    assert sorted(h.spec() for h in hooks if isinstance(h, needs_java)) == [11, 17]


# --- "Lightweight tasks using @cache" --------------------------------------------------------


class Terms(Config):
    source: Param[str]
    counter: Param[str]

    @cache("terms.json")
    def load(self, path: Path):
        if path.is_file():
            return json.loads(path.read_text())
        weights = self.compute_weights()
        path.write_text(json.dumps(weights))
        return weights

    def compute_weights(self):
        start = time.time()
        time.sleep(0.5)  # long to compute: the other process must wait, not recompute
        append_log(Path(self.counter), name="compute", pid=os.getpid(), start=start,
                   end=time.time())
        return {"the": 0.1, self.source: 0.9}


def wait_at_barrier(barrier: Path, me: str, parties: int, timeout: float = 30.0) -> None:
    """Announce ``me`` in the directory ``barrier``; return once ``parties`` have."""
    (barrier / me).touch()
    deadline = time.monotonic() + timeout
    while len(list(barrier.iterdir())) < parties:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{me}: the other callers never reached the barrier")
        time.sleep(0.01)


class UseTerms(Task):
    terms: Param[Terms]
    worker: Param[int]
    barrier: Meta[str]
    log: Meta[str]

    def execute(self):
        wait_at_barrier(Path(self.barrier), str(self.worker), parties=2)
        called = time.time()
        weights = self.terms.load()
        append_log(Path(self.log), name="call", worker=self.worker, pid=os.getpid(),
                   called=called, returned=time.time())
        Path("terms.json").write_text(json.dumps(weights))


def test_cache_computes_once_across_two_processes(workspace, log, tmp_path):
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    calls = tmp_path / "calls.log"
    terms = Terms(source="robust04", counter=str(log))
    with experiment(workspace, "cache", launcher=LocalLauncher(cpu_slots=2)):
        tasks = [
            UseTerms(terms=terms, worker=i, barrier=str(barrier), log=str(calls))
            for i in range(2)
        ]
        for t in tasks:
            t.submit()
    (compute,) = read_log(log)  # the body ran once...
    assert compute["name"] == "compute"
    records = read_log(calls)
    assert sorted(r["worker"] for r in records) == [0, 1]
    assert len({r["pid"] for r in records}) == 2
    for r in records:  # ...while both processes were inside load(): they ran at once
        assert r["called"] < compute["end"]
        assert r["returned"] >= compute["end"]
    assert compute["pid"] in {r["pid"] for r in records}
    for t in tasks:
        assert json.loads((t.__taskdir__ / "terms.json").read_text()) == {
            "the": 0.1,
            "robust04": 0.9,
        }
    cached = workspace / "cache" / type_id(terms) / identifier(terms) / "terms.json"
    assert cached.is_file()


def test_cache_in_the_client_uses_the_experiment_workspace(workspace, log):
    terms = Terms(source="x", counter=str(log))
    with experiment(workspace, "cache-client"):
        assert terms.load() == {"the": 0.1, "x": 0.9}
        assert terms.load() == {"the": 0.1, "x": 0.9}
    assert len(read_log(log)) == 1
    assert (workspace / "cache" / type_id(terms) / identifier(terms) / "terms.json").is_file()


def test_cache_outside_experiment_uses_env_or_says_what_to_do(tmp_path, log, monkeypatch):
    from corral import ConfigError

    monkeypatch.delenv("CORRAL_WORKSPACE", raising=False)
    with pytest.raises(ConfigError, match="@cache needs a workspace"):
        Terms(source="y", counter=str(log)).load()
    monkeypatch.setenv("CORRAL_WORKSPACE", str(tmp_path / "envws"))
    assert Terms(source="y", counter=str(log)).load()["y"] == 0.9
    assert (tmp_path / "envws" / "cache").is_dir()


# --- "Task lifecycle" ------------------------------------------------------------------------


def test_maintaskdir_is_set_on_sub_configs(workspace):
    from tests.execution.tasks import Sub

    with experiment(workspace, "lifecycle"):
        task = WithSub(sub=Sub())
        task.submit()
    assert (task.__taskdir__ / "maintaskdir.txt").read_text() == str(task.__taskdir__)


class Tagged(Task):
    model: Param[Model]
    lr: Param[float]

    def execute(self):
        Path("tags.json").write_text(json.dumps(self.__tags__))
        Path("cwd.txt").write_text(os.getcwd())


def test_tags_and_working_directory_inside_the_job(workspace):
    from corral import tag

    with experiment(workspace, "lifecycle"):
        task = Tagged(model=Model(hidden=tag(64)), lr=tag(0.1))
        task.submit()
    assert json.loads((task.__taskdir__ / "tags.json").read_text()) == {"hidden": 64, "lr": 0.1}
    assert (task.__taskdir__ / "cwd.txt").read_text() == str(task.__taskdir__)
