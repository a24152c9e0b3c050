"""Packed jobs on the rig's SLURM: 500 jobs through a few workers, each done exactly once
when a worker is scancelled, when a worker process is killed with SIGKILL, and when the
client is killed; a re-run runs nothing. Each task appends a line to a file named by its
identity, so a job run twice shows."""

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

from corral import experiment
from corral.host import pack
from corral.launchers.packing import Pack
from corral.launchers.slurm import SlurmLauncher

REPO = Path(__file__).resolve().parents[2]
JOBS = 500

CLIENT = """
import sys
from corral import experiment
from corral.launchers.slurm import SlurmLauncher
from corral.launchers.packing import Pack
from tests.execution.model_tasks import Append

workspace, out, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
launcher = SlurmLauncher(time="5", pack=Pack(workers=4, per_worker=2, idle="5s"))
with experiment(workspace, "packed", launcher=launcher):
    for i in range({jobs}):
        Append(token=str(i), seconds=seconds, out=out).submit()
"""


@pytest.fixture
def client(tmp_path):
    script = tmp_path / "client.py"
    script.write_text(textwrap.dedent(CLIENT.format(jobs=JOBS)))
    out = tmp_path / "out"
    out.mkdir()

    def start(seconds: float = 0.08) -> subprocess.Popen:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        return subprocess.Popen(
            [sys.executable, str(script), str(tmp_path / "ws"), str(out), str(seconds)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )

    return start, out, tmp_path / "ws"


def lines(out: Path) -> dict[str, int]:
    return {p.name: p.read_text().count("\n") for p in out.iterdir()}


def wait_for(predicate, timeout: float = 120.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def pool_of(ws: Path) -> Path:
    (found,) = (ws / ".corral" / "pack").iterdir()
    return found


def check_exactly_once(start, out: Path) -> None:
    counts = lines(out)
    assert len(counts) == JOBS
    assert set(counts.values()) == {1}, {k: v for k, v in counts.items() if v != 1}
    rerun = start()
    _, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    assert f"all {JOBS} jobs already done, nothing to run" in err
    assert lines(out) == counts


def survives(client, fault) -> None:
    """Start the 500 jobs, apply ``fault`` to the pool once 60 are done, let the client
    finish: every job done exactly once, and a re-run runs nothing."""
    start, out, ws = client
    proc = start()
    wait_for(lambda: len(list(out.iterdir())) >= 60, what="jobs done")
    fault(pool_of(ws))
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    check_exactly_once(start, out)


def test_a_scancelled_worker_loses_no_job_and_runs_none_twice(slurm_cluster, client):
    def scancel_a_busy_worker(pool: Path) -> None:
        victim = next(iter(pack.claimed_entries(pool).values()))  # one running a job
        slurm_cluster.command("scancel", victim)

    survives(client, scancel_a_busy_worker)


def test_a_worker_killed_with_sigkill_loses_no_job_and_runs_none_twice(slurm_cluster, client):
    def kill_a_busy_worker(pool: Path) -> None:
        busy = set(pack.claimed_entries(pool).values())
        victim = next(info for w, info in pack.workers(pool).items() if w in busy)
        os.kill(int(victim["pid"]), signal.SIGKILL)  # the nodes share this machine's pids

    survives(client, kill_a_busy_worker)


def test_a_killed_client_is_re_attached_and_nothing_runs_twice(slurm_cluster, client):
    start, out, _ = client
    proc = start()
    wait_for(lambda: len(list(out.iterdir())) >= 60, what="jobs done")
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    second = start()
    _, err = second.communicate(timeout=300)
    assert second.returncode == 0, err
    assert "already done" in err  # what the first client's workers finished meanwhile
    check_exactly_once(start, out)


def test_packed_jobs_show_their_worker_and_are_killed_like_any_job(slurm_cluster, tmp_path):
    from click.testing import CliRunner

    from corral.cli import cli
    from tests.execution.model_tasks import CleansUp

    launcher = SlurmLauncher(time="5", pack=Pack(workers=1, per_worker=2, idle="3s"))
    with experiment(tmp_path / "ws", "shown", launcher=launcher, wait=False, progress=False):
        task = CleansUp(token="packed-kill", cleanup=0.2)
        task.submit()
    wait_for(lambda: (task.__taskdir__ / "started").exists(), what="the job to start")
    launch = json.loads((task.__taskdir__ / ".corral" / "launch.json").read_text())
    worker = launch["handle"]["worker"]  # the worker that runs it, in `corral jobs ls`
    listing = CliRunner().invoke(cli, ["jobs", "ls", "-w", str(tmp_path / "ws")])
    assert f"{worker} (worker)" in listing.output, listing.output
    short = task.__taskdir__.name[:12]
    killed = CliRunner().invoke(cli, ["jobs", "kill", short, "-w", str(tmp_path / "ws")])
    assert killed.exit_code == 0, killed.output
    wait_for(lambda: (task.__taskdir__ / "cleaned.txt").exists(), what="the cleanup")
    marker = json.loads((task.__taskdir__ / ".corral" / "failed").read_text())
    assert marker["reason"] == "killed"


def test_the_client_pays_one_agent_command_per_poll_cycle_for_all_packed_jobs(
    slurm_cluster, tmp_path
):
    from tests.execution.model_tasks import Append

    out = tmp_path / "out"
    out.mkdir()
    launcher = SlurmLauncher(time="5", pack=Pack(workers=2, per_worker=2, idle="3s"))
    with experiment(tmp_path / "ws", "cost", launcher=launcher, progress=False):
        for i in range(200):
            Append(token=f"c{i}", out=str(out)).submit()
    assert len(lines(out)) == 200
    calls = launcher.host.calls
    assert set(calls) <= {"recover", "start", "pack", "version"}, calls  # none per job
    assert calls["recover"] == 1 and calls["start"] == 1  # each once for all 200 jobs
    assert calls["pack"] == launcher.counts["pack"] >= 1  # one per poll cycle
    arrays = json.loads((pool_of(tmp_path / "ws") / pack.ARRAYS).read_text())
    assert sum(a["n"] for a in arrays) <= 4  # a few workers, not one allocation per job
