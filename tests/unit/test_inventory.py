"""Reading a workspace from its files alone: jobs, states, experiments, job scripts."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import pytest

from corral import ConfigError
from corral.core import procs
from corral.core.script import ScriptSpec, parse_job_script, render_job_script
from corral.core.workspace import Workspace
from corral.ops.inventory import (
    find_job,
    format_age,
    list_experiments,
    list_jobs,
    parse_since,
    read_experiment,
    read_job,
)

TYPE = "pkg.tasks.Learn"
OTHER = "pkg.tasks.Evaluate"


def make_job(
    ws: Workspace,
    ident: str,
    *,
    type_id: str = TYPE,
    launch: dict | None = None,
    done: bool = False,
    failed: dict | None = None,
    pointer: dict | None = None,
) -> Path:
    d = ws.job_dir(type_id, ident)
    (d / ".corral").mkdir(parents=True)
    (d / "params.json").write_text("{}")
    if launch is not None:
        (d / ".corral" / "launch.json").write_text(json.dumps(launch))
    if done:
        (d / ".corral" / "done").write_text("{}")
    if failed is not None:
        (d / ".corral" / "failed").write_text(json.dumps(failed))
    if pointer is not None:
        (d / ".corral" / "remote.json").write_text(json.dumps(pointer))
    return d


def local_launch(handle: dict, host: str | None = None, at: float | None = None) -> dict:
    return {"launcher": "local", "handle": handle, "host": host or socket.gethostname(),
            "time": at if at is not None else time.time()}


@pytest.fixture
def ws(tmp_path) -> Workspace:
    return Workspace(tmp_path / "ws")


def test_states_from_markers_launch_records_and_pointers(ws):
    me = procs.handle_for(os.getpid())
    dead = {"pid": 2**22 + 17, "start": 1, "boot": procs.boot_id()}
    make_job(ws, "a" * 64, launch=local_launch(me), done=True)
    make_job(ws, "b" * 64, launch=local_launch(me), failed={"reason": "oom", "message": "x"})
    make_job(ws, "c" * 64, launch=local_launch(me))
    make_job(ws, "d" * 64, launch=local_launch(dead))
    make_job(ws, "e" * 64, launch=local_launch(me, host="elsewhere"))
    make_job(ws, "f" * 64, launch={"launcher": "slurm", "handle": {"id": "12_3", "array": "12"},
                                   "host": "login", "time": time.time()})
    make_job(ws, "0" * 64)
    make_job(ws, "1" * 64, type_id=OTHER, pointer={
        "launcher": "ssh", "host": "bob@gpu:22", "alias": "gpu", "remote_dir": "/r/jobs/x/1",
        "state": "failed", "failure": {"reason": "import", "message": "no module"},
        "handle": {"pid": 5},
    })
    jobs = {j.identifier[0]: j for j in list_jobs(ws)}
    assert {k: j.state for k, j in jobs.items()} == {
        "a": "done", "b": "failed", "c": "running", "d": "lost", "e": "unknown",
        "f": "submitted", "0": "created", "1": "failed",
    }
    assert jobs["b"].reason == "failed (oom)" and jobs["b"].failure.message == "x"
    assert jobs["f"].slurm_id == "12_3" and jobs["a"].slurm_id is None
    remote = jobs["1"]
    assert remote.remote and remote.host == "bob@gpu:22" and remote.task == "Evaluate"
    assert remote.directory == "/r/jobs/x/1" and remote.log_path(stderr=True) == "/r/jobs/x/1/stderr"
    assert remote.script_path == remote.local_dir / ".corral" / "job.sh"
    assert jobs["a"].directory == str(ws.job_dir(TYPE, "a" * 64))
    assert sorted(j.identifier[0] for j in list_jobs(ws, states={"failed", "lost"})) == [
        "1", "b", "d"
    ]
    assert read_job(ws, TYPE, "9" * 64).state == "not submitted"


def test_since_and_order(ws):
    now = time.time()
    me = procs.handle_for(os.getpid())
    make_job(ws, "a" * 64, launch=local_launch(me, at=now - 3 * 3600), done=True)
    make_job(ws, "b" * 64, launch=local_launch(me, at=now - 60), done=True)
    make_job(ws, "c" * 64, launch=local_launch(me, at=now - 7200 + 60), done=True)
    assert [j.identifier[0] for j in list_jobs(ws)] == ["a", "c", "b"]  # oldest first
    assert [j.identifier[0] for j in list_jobs(ws, since=parse_since("2h"))] == ["c", "b"]
    assert [j.identifier[0] for j in list_jobs(ws, since=parse_since("5m"))] == ["b"]


def test_find_job_by_prefix(ws):
    make_job(ws, "abc1" + "0" * 60)
    make_job(ws, "abc2" + "0" * 60)
    make_job(ws, "abd0" + "0" * 60, type_id=OTHER)
    assert find_job(ws, "abc1").identifier.startswith("abc1")
    assert find_job(ws, "Evaluate/ab").type_id == OTHER
    assert find_job(ws, f"jobs/{TYPE}/abc2").identifier.startswith("abc2")
    with pytest.raises(ConfigError) as e:
        find_job(ws, "abc")
    message = str(e.value)
    assert "\n" not in message and "ambiguous" in message
    assert "Learn/abc1" in message and "Learn/abc2" in message
    with pytest.raises(ConfigError, match=r"no job 'zz' in .*; jobs there: .*Learn/abc1") as e:
        find_job(ws, "zz")
    assert "\n" not in str(e.value)


def test_experiments_runs_and_counts(ws):
    me = procs.handle_for(os.getpid())
    make_job(ws, "a" * 64, launch=local_launch(me), done=True)
    make_job(ws, "b" * 64, launch=local_launch(me), failed={"reason": "failed"})
    runs = ws.experiments / "sweep" / "runs"
    runs.mkdir(parents=True)
    lines = [{"type_id": TYPE, "identifier": c * 64, "launcher": "local"} for c in "ab9"]
    (runs / "20240101-120000-1.jsonl").write_text(json.dumps(lines[0]) + "\n")
    (runs / "20240102-120000-2.jsonl").write_text(
        "".join(json.dumps(x) + "\n" for x in lines) + '{"type_id": "half'
    )
    (ws.experiments / "sweep" / "latest").write_text("20240102-120000-2\n")
    (xp,) = list_experiments(ws)
    assert [r.run_id for r in xp.runs] == ["20240101-120000-1", "20240102-120000-2"]
    latest = xp.latest
    assert latest is not None and latest.run_id == "20240102-120000-2"
    assert latest.counts == {"done": 1, "failed": 1, "not submitted": 1}
    assert latest.started == pytest.approx(time.mktime((2024, 1, 2, 12, 0, 0, 0, 0, -1)))
    assert xp.runs[0].final and xp.runs[0].counts == {"done": 1}
    with pytest.raises(ConfigError, match=r"no experiment 'nope' .*experiments: sweep\)$"):
        read_experiment(ws, "nope")


def test_job_script_is_read_back():
    spec = ScriptSpec(
        job_dir="/w/jobs/t/i", python="/opt/py env/bin/python", identifier="i", type_id="t",
        environ={"B": "two words", "A": "x'y", "CUDA_VISIBLE_DEVICES": ""},
        header=["#SBATCH --time=10"], setup=["source /opt/venv/bin/activate", "export Z=1"],
    )
    info = parse_job_script(render_job_script(spec))
    assert info.python == "/opt/py env/bin/python"
    assert info.environ == {"A": "x'y", "B": "two words", "CUDA_VISIBLE_DEVICES": ""}
    assert info.setup == ["source /opt/venv/bin/activate", "export Z=1"]
    assert info.secrets is None
    with_secrets = parse_job_script(render_job_script(
        ScriptSpec(job_dir="/j", python="py", identifier="i", type_id="t", environ={"A": "1"},
                   setup=["module load x"], secrets=".corral/secrets.env")
    ))
    assert with_secrets.secrets == ".corral/secrets.env"
    assert with_secrets.environ == {"A": "1"} and with_secrets.setup == ["module load x"]
    assert parse_job_script("not a job script").python is None


def test_since_and_age_formats():
    now = 1_000_000.0
    assert parse_since("2h", now) == now - 7200
    assert parse_since("1.5d", now) == now - 1.5 * 86400
    assert parse_since("30m", now) == now - 1800
    assert parse_since("2024-05-01") == time.mktime((2024, 5, 1, 0, 0, 0, 0, 0, -1))
    with pytest.raises(ConfigError, match=r"--since 'yesterday': give a span"):
        parse_since("yesterday")
    assert [format_age(s) for s in (None, 5, 125, 7300, 200000)] == ["-", "5s", "2m", "2h", "2d"]


def test_thousands_of_jobs_are_listed_with_their_states(ws):
    me = procs.handle_for(os.getpid())
    launch = json.dumps(local_launch(me))
    for i in range(3_000):
        d = ws.jobs / f"pkg.T{i % 20}" / f"{i:064x}"
        (d / ".corral").mkdir(parents=True)
        (d / ".corral" / "launch.json").write_text(launch)
        if i % 3:
            (d / ".corral" / "done").write_text("{}")
    jobs = list_jobs(ws)
    assert len(jobs) == 3_000
    assert sum(j.state == "done" for j in jobs) == 2_000
    assert sum(j.state == "running" for j in jobs) == 1_000  # this process is alive
