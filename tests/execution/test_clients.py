"""Experiment scripts run as real client processes: killed, detached, concurrent.

The script and a module next to it are written to a temporary project and run from another
directory without PYTHONPATH, as a user would.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

HELPERS = '''
import json, os, time
from pathlib import Path
from corral import Meta, Param, Task


def append_log(log, **record):
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(fd, (json.dumps(record) + "\\n").encode())
    os.close(fd)


class Slow(Task):
    """Defined in a module next to the experiment script."""
    seconds: Param[float]
    log: Meta[str]

    def execute(self):
        append_log(self.log, name="slow", start=time.time(), pid=os.getpid())
        time.sleep(self.seconds)
        Path("slow.txt").write_text("slow done")
        append_log(self.log, name="slow-end", end=time.time())
'''

SCRIPT = '''
import sys, time
from pathlib import Path
from corral import Meta, Param, Task, experiment
from helpers import Slow, append_log


class InScript(Task):
    """Defined in the experiment script itself."""
    slow: Param[Slow]
    log: Meta[str]

    def execute(self):
        append_log(self.log, name="in-script", start=time.time(),
                   saw=(self.slow.__taskdir__ / "slow.txt").read_text())


if __name__ == "__main__":
    workspace, log, seconds, mode = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
    with experiment(workspace, "clients", wait=(mode == "wait")):
        slow = Slow(seconds=seconds, log=log)
        slow.submit()
        InScript(slow=slow, log=log).submit()
        print("submitted", flush=True)
    print("finished", flush=True)
'''


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    (root / "helpers.py").write_text(textwrap.dedent(HELPERS))
    (root / "run_experiment.py").write_text(textwrap.dedent(SCRIPT))
    return root


def client(project: Path, workspace: Path, log: Path, seconds: float, mode: str):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.Popen(
        [sys.executable, str(project / "run_experiment.py"), str(workspace), str(log),
         str(seconds), mode],
        cwd=project.parent.parent,  # not the script's directory
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def records(log: Path) -> list[dict]:
    if not log.exists():
        return []
    return [json.loads(x) for x in log.read_text().splitlines() if x]


def names(log: Path) -> list[str]:
    return sorted(r["name"] for r in records(log))


def wait_for(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


def finish(proc: subprocess.Popen, timeout: float = 60) -> str:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    return out


def test_tasks_in_the_script_and_next_to_it_run_from_anywhere(project, tmp_path):
    log = tmp_path / "log"
    out = finish(client(project, tmp_path / "ws", log, 0, "wait"))
    assert out.split() == ["submitted", "finished"]
    assert names(log) == ["in-script", "slow", "slow-end"]
    params = next((tmp_path / "ws" / "jobs").glob("run_experiment.InScript/*/params.json"))
    cls = json.loads(params.read_text())["objects"][-1]["class"]
    assert cls["module"] == "run_experiment"
    assert cls["file"] == str(project / "run_experiment.py")


def test_reattach_after_the_client_is_killed(project, tmp_path):
    log, ws = tmp_path / "log", tmp_path / "ws"
    first = client(project, ws, log, 2.0, "wait")
    wait_for(lambda: "slow" in names(log))
    first.send_signal(signal.SIGKILL)
    first.communicate()
    job_pid = records(log)[0]["pid"]
    os.kill(job_pid, 0)  # the job survived its client
    finish(client(project, ws, log, 2.0, "wait"))
    assert names(log) == ["in-script", "slow", "slow-end"]  # each ran exactly once


def test_wait_false_then_a_second_run_collects_the_results(project, tmp_path):
    log, ws = tmp_path / "log", tmp_path / "ws"
    started = time.monotonic()
    out = finish(client(project, ws, log, 1.5, "nowait"))
    assert out.split() == ["submitted", "finished"]
    assert time.monotonic() - started < 1.5 + 1.0  # did not wait for the 1.5 s job...
    assert "slow-end" not in names(log)
    # ...while the dependent job waits for its dependency by itself, without the client
    wait_for(lambda: "in-script" in names(log))
    rec = {r["name"]: r for r in records(log)}
    assert rec["in-script"]["start"] >= rec["slow-end"]["end"]
    assert rec["in-script"]["saw"] == "slow done"
    finish(client(project, ws, log, 1.5, "wait"))
    assert names(log) == ["in-script", "slow", "slow-end"]


@pytest.mark.parametrize("clients", [2, 4])
def test_concurrent_clients_run_each_job_once(project, tmp_path, clients):
    log, ws = tmp_path / "log", tmp_path / "ws"
    procs = [client(project, ws, log, 0.5, "wait") for _ in range(clients)]
    for p in procs:
        finish(p)
    assert names(log) == ["in-script", "slow", "slow-end"]


def test_a_reattached_job_that_vanishes_is_lost_and_its_dependent_not_run(project, tmp_path):
    log, ws = tmp_path / "log", tmp_path / "ws"
    first = client(project, ws, log, 30.0, "wait")
    wait_for(lambda: "slow" in names(log))
    first.send_signal(signal.SIGKILL)
    first.communicate()
    second = client(project, ws, log, 30.0, "wait")
    runs = ws / "experiments" / "clients" / "runs"
    wait_for(lambda: len(list(runs.glob("*.jsonl"))) == 2)
    time.sleep(1.0)  # the second client re-attaches to the running job
    os.kill(records(log)[0]["pid"], signal.SIGKILL)  # no marker can be written
    _, err = second.communicate(timeout=60)
    assert second.returncode == 1
    assert "2 job(s) failed" in err
    assert "lost: the job process ended without a result" in err
    assert "dependency: dependency failed: Slow/" in err
    assert names(log) == ["slow"]
