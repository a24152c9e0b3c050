"""Nothing lost, nothing run twice: clients killed or racing, on every launcher.

Each execution of a task appends one line to a log (on the host where the job runs), so a
job run twice, or never, shows. Clients are real processes, killed with SIGKILL.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from corral.connectors.ssh import SSHConnector, close_all

REPO = Path(__file__).resolve().parents[2]
REMOTE_HOME = "/home/corraltest"
pytestmark = pytest.mark.reliability

CLIENT = """
import json, sys
from corral import experiment
from corral.connectors.ssh import SSHConnector
from corral.launchers.local import LocalLauncher
from corral.launchers.slurm import SlurmLauncher
from corral.launchers.ssh import SSHLauncher
from tests.execution.tasks import Record

args = json.loads(sys.argv[1])
if args["launcher"] == "local":
    launcher = LocalLauncher(cpu_slots=4)
elif args["launcher"] == "ssh":
    launcher = SSHLauncher(SSHConnector(args["alias"], config_file=args["config"]),
                           workdir=args["workdir"], python=args["python"], cpu_slots=4)
elif args["launcher"] == "slurm-ssh":
    launcher = SlurmLauncher(SSHConnector(args["alias"], config_file=args["config"]),
                             workdir=args["workdir"], python=args["python"], time="5")
else:
    launcher = SlurmLauncher(time="5")
with experiment(args["ws"], "reliability", launcher=launcher):
    for i in range(args["n"]):
        Record(name=f"t{i}", sleep=args["sleep"], log=args["log"]).submit()
print("all done", flush=True)
"""


@pytest.fixture(autouse=True)
def fresh_pool():
    yield
    close_all()


class Where:
    """Where one launcher's jobs run, and how to read what they left there."""

    def __init__(self, kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
        self.kind = kind
        self.args: dict[str, object] = {"launcher": kind, "ws": str(tmp_path / "ws")}
        self.connector: SSHConnector | None = None
        if kind in ("ssh", "slurm-ssh"):
            rig, host = request.getfixturevalue("rig"), request.getfixturevalue("ssh_host")
            workdir = f"{REMOTE_HOME}/rel-{uuid.uuid4().hex[:10]}"
            self.connector = SSHConnector(host.alias, config_file=host.ssh_config)
            self.args |= {"alias": host.alias, "config": str(host.ssh_config),
                          "workdir": workdir, "python": rig.python, "log": f"{workdir}-log"}
            request.addfinalizer(lambda: self.connector.run(  # type: ignore[union-attr]
                ["sh", "-c", f"pkill -u corraltest -f {workdir}; rm -rf -- {workdir}*"]))
        else:
            if kind == "slurm":
                request.getfixturevalue("slurm_cluster")
            self.args["log"] = str(tmp_path / "log")
        if kind == "slurm-ssh":
            request.getfixturevalue("slurm_cluster")
        self.jobs = (f"{self.args['workdir']}/jobs" if self.connector is not None
                     else str(tmp_path / "ws" / "jobs"))

    def client(self, tmp_path: Path, **args: object) -> subprocess.Popen[str]:
        script = tmp_path / "client.py"
        script.write_text(textwrap.dedent(CLIENT))
        return subprocess.Popen(
            [sys.executable, str(script), json.dumps({**self.args, **args})],
            env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )

    def read(self, path: str) -> str:
        if self.connector is not None:
            return self.connector.read_text(path) if self.connector.exists(path) else ""
        return Path(path).read_text() if Path(path).exists() else ""

    def executions(self) -> list[str]:
        return [json.loads(line)["name"] for line in self.read(str(self.args["log"])).splitlines()]

    def count(self, pattern: str) -> int:
        """How many files match ``jobs/*/*/<pattern>`` where the jobs run."""
        argv = ["sh", "-c", f"ls -d {self.jobs}/*/*/{pattern} 2>/dev/null | wc -l"]
        if self.connector is not None:
            return int(self.connector.run(argv, check=True).stdout)
        return int(subprocess.run(argv, capture_output=True, text=True, check=True).stdout)


def finish(proc: subprocess.Popen[str], timeout: float = 300) -> None:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0 and "all done" in out, err[-3000:]


@pytest.mark.parametrize("kind", ["local", "ssh", "slurm"])
def test_client_killed_while_50_jobs_run_then_rerun_runs_each_exactly_once(
    kind, tmp_path, request
):
    where = Where(kind, tmp_path, request)
    first = where.client(tmp_path, n=50, sleep=1.0)
    deadline = time.monotonic() + 120
    while len(where.executions()) < 5:  # some done, others running or queued
        assert first.poll() is None, first.communicate()[1][-2000:]
        assert time.monotonic() < deadline, "no job finished in 120 s"
        time.sleep(0.2)
    first.send_signal(signal.SIGKILL)
    first.communicate()
    finish(where.client(tmp_path, n=50, sleep=1.0))
    executions = where.executions()
    assert sorted(executions) == sorted(f"t{i}" for i in range(50))  # each once, none lost
    assert where.count(".corral/done") == 50  # every directory has its final state
    assert where.count(".corral/failed") == 0


# 2 clients race as 4 do: the remote launchers are run with 4, the local one with both
@pytest.mark.parametrize(("kind", "clients"), [("local", 2), ("local", 4), ("ssh", 4),
                                               ("slurm", 4)])
def test_concurrent_clients_submitting_the_same_100_tasks_run_each_once(
    kind, clients, tmp_path, request
):
    where = Where(kind, tmp_path, request)
    procs = [where.client(tmp_path, n=100, sleep=0.0) for _ in range(clients)]
    for proc in procs:
        finish(proc)  # every client saw every job done
    assert sorted(where.executions()) == sorted(f"t{i}" for i in range(100))
    assert where.count(".corral/done") == 100


@pytest.mark.parametrize("kind", ["ssh", "slurm-ssh"])
def test_sshd_restarted_while_jobs_run_the_run_completes(kind, tmp_path, request):
    where = Where(kind, tmp_path, request)
    client = where.client(tmp_path, n=8, sleep=3.0)
    deadline = time.monotonic() + 120
    while where.count(".corral/run.lock") == 0:  # jobs are running over there
        assert client.poll() is None, client.communicate()[1][-2000:]
        assert time.monotonic() < deadline, "no job started in 120 s"
        time.sleep(0.2)
    subprocess.run(["bash", str(REPO / "tests/rig/rig.sh"), "restart", "sshd"], check=True,
                   capture_output=True)
    finish(client)  # reconnected, kept polling, saw every job done
    assert sorted(where.executions()) == sorted(f"t{i}" for i in range(8))
    assert where.count(".corral/done") == 8


@pytest.mark.parametrize("kind", ["ssh", "slurm"])
def test_xp_kill_stops_a_live_client_and_nothing_starts_after(kind, tmp_path, request):
    """``corral xp kill`` while the client runs: the client starts nothing more and leaves
    saying so, the running jobs are killed, and no job starts afterwards."""
    where = Where(kind, tmp_path, request)
    client = where.client(tmp_path, n=6, sleep=60.0)
    started = 4 if kind == "ssh" else 6  # ssh: 4 CPU slots, 2 jobs wait; slurm: one array
    deadline = time.monotonic() + 120
    while where.count(".corral/launch.json") < started:
        assert client.poll() is None, client.communicate()
        assert time.monotonic() < deadline, "the jobs never started"
        time.sleep(0.2)
    corral = [sys.executable, "-m", "corral"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    killed = subprocess.run([*corral, "xp", "kill", "reliability", "-w", str(where.args["ws"]),
                             "--grace", "1"], capture_output=True, text=True, timeout=120,
                            env=env)
    assert killed.returncode == 0, killed.stderr
    lines = killed.stdout.splitlines()
    assert lines[0].startswith("asking its client (pid ") and "starts nothing more" in lines[1]
    _, err = client.communicate(timeout=120)
    assert client.returncode == 1, err
    assert err.splitlines()[-1].startswith(
        "corral: error: the experiment was stopped with `corral xp kill` (run "
    ), err
    time.sleep(3)  # had anything started after the kill, it would show by now
    assert where.count(".corral/launch.json") == started
    assert where.executions() == []  # every job was stopped before its end
    listing = subprocess.run([*corral, "jobs", "ls", "-w", str(where.args["ws"])],
                             capture_output=True, text=True, timeout=120, env=env).stdout
    assert " running " not in listing and " submitted " not in listing, listing
