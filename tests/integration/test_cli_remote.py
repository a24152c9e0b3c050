"""``corral jobs`` and ``corral xp`` on jobs run by the SSH launcher on the rig's sshd."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import corral.cli.jobs  # the commands register themselves on the group
import corral.cli.xp
from corral import experiment
from corral.cli import cli
from corral.connectors.ssh import SSHConnector, close_all
from corral.core.workspace import Workspace, read_json
from corral.ops.inventory import read_job
from tests.execution.tasks import Fail, Record, Talk
from tests.integration.test_ssh_launcher import REMOTE_HOME, launcher_for


@pytest.fixture(autouse=True)
def fresh_pool():
    yield
    close_all()


@pytest.fixture
def workdir(ssh_host) -> str:
    path = f"{REMOTE_HOME}/cli-{uuid.uuid4().hex[:10]}"
    yield path
    c = SSHConnector(ssh_host.alias, config_file=ssh_host.ssh_config)
    c.run(["sh", "-c", f"pkill -u corraltest -f {path} || true; rm -rf -- {path}"])


def corral(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_ls_and_log_follow_over_ssh(ssh_host, rig, workdir, tmp_path):
    ws = tmp_path / "ws"
    launcher = launcher_for(ssh_host, rig, workdir, cpu_slots=2)
    with experiment(ws, "remote", launcher=launcher, wait=False) as xp:
        Talk(lines=8).submit()
    (job,) = xp.jobs.values()
    listing = corral("jobs", "ls", "-w", str(ws)).stdout.splitlines()
    (row,) = [line.split() for line in listing[1:]]
    assert row[:5] == [job.identifier[:12], "Talk", "ssh", f"corraltest@127.0.0.1:{ssh_host.port}",
                       "running"]
    started = time.monotonic()
    out = corral("jobs", "log", "-f", job.identifier[:8], "-w", str(ws)).output
    assert out == "".join(f"line {i}\n" for i in range(8))
    assert time.monotonic() - started >= 0.8  # followed while the job wrote, then stopped
    # following it to its end recorded how it ended: listings no longer say running
    assert read_job(Workspace(ws), job.type_id, job.identifier).state == "done"
    waited = corral("xp", "wait", "remote", "--interval", "0.2", "-w", str(ws))
    assert waited.exit_code == 0 and waited.output.rstrip().endswith("1/1 done (1 done)")
    assert corral("jobs", "ls", "-w", str(ws)).stdout.splitlines()[1].split()[4] == "done"
    assert corral("jobs", "log", job.identifier[:8], "-w", str(ws)).output == out
    show = corral("jobs", "show", job.identifier[:8], "-w", str(ws)).output
    assert f"directory: corraltest@127.0.0.1:{ssh_host.port}:{job.directory}" in show
    assert f"PYTHON={rig.python}" in show


def test_kill_and_clean_over_ssh(ssh_host, rig, workdir, tmp_path):
    ws = tmp_path / "ws"
    log = f"{workdir}-log.jsonl"
    launcher = launcher_for(ssh_host, rig, workdir, cpu_slots=2, cancel_grace=2.0)
    with experiment(ws, "doomed", launcher=launcher, wait=False) as xp:
        Record(name="forever", sleep=120, log=log).submit()
        Fail(how="raise", log=log).submit()
    forever, fail = xp.jobs.values()
    c = SSHConnector(ssh_host.alias, config_file=ssh_host.ssh_config)
    deadline = time.monotonic() + 60
    while not c.exists(f"{forever.directory}/.corral/run.lock"):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    killed = corral("xp", "kill", "doomed", "-w", str(ws)).output
    assert f"Record/{forever.identifier[:12]}: killed on corraltest@127.0.0.1" in killed
    pointer = read_json(ws / forever.relpath / ".corral" / "remote.json")
    assert pointer["state"] == "failed" and pointer["failure"]["reason"] == "killed"
    assert corral("xp", "wait", "doomed", "--interval", "0.2", "-w", str(ws)).exit_code == 1
    cleaned = corral("jobs", "clean", "--yes", "-w", str(ws)).output
    assert "2 of 2 removed" in cleaned
    assert not c.exists(str(forever.directory)) and not c.exists(str(fail.directory))
    assert not (ws / forever.relpath).exists()


def test_ls_refresh_and_show_ask_the_host_and_record_what_it_says(ssh_host, rig, workdir,
                                                                  tmp_path):
    ws = tmp_path / "ws"
    log = f"{workdir}-log.jsonl"
    launcher = launcher_for(ssh_host, rig, workdir, cpu_slots=2)
    with experiment(ws, "stale", launcher=launcher, wait=False) as xp:
        Record(name="quick", sleep=0.2, log=log).submit()
        Record(name="slow", sleep=60, log=log).submit()
    quick, slow = xp.jobs.values()
    c = SSHConnector(ssh_host.alias, config_file=ssh_host.ssh_config)
    deadline = time.monotonic() + 60
    while not c.exists(f"{quick.directory}/.corral/done"):
        assert time.monotonic() < deadline
        time.sleep(0.2)

    def states(*args: str) -> dict[str, str]:
        out = corral("jobs", "ls", *args, "-w", str(ws)).stdout.splitlines()
        return {line.split()[0]: line.split()[4] for line in out[1:]}

    ids = quick.identifier[:12], slow.identifier[:12]
    assert states() == dict.fromkeys(ids, "running")  # the last known, from the client
    refreshed = corral("jobs", "ls", "--refresh", "-w", str(ws))
    assert refreshed.stderr.splitlines()[-1] == "2 jobs: 1 done, 1 running"
    assert states("--refresh") == {ids[0]: "done", ids[1]: "running"}
    assert states() == {ids[0]: "done", ids[1]: "running"}  # what the host said is recorded
    show = corral("jobs", "show", ids[1], "-w", str(ws)).stdout
    assert "state:     running\n" in show  # asked of the host: not "(last known)"
    assert states("--task", "Record", "--xp", "stale") == {ids[0]: "done", ids[1]: "running"}
    typo = CliRunner().invoke(cli, ["jobs", "ls", "--task", "Recrod", "-w", str(ws)])
    assert typo.exit_code == 1
    assert "no job of task 'Recrod' (did you mean 'Record'?)" in typo.stderr
    # the slow one would hold its CPU slot of the host a minute more: the host's slots are
    # the machine's, across workdirs
    assert corral("jobs", "kill", ids[1], "-w", str(ws)).exit_code == 0


def test_a_host_of_the_hosts_file_is_listed_by_its_name(ssh_host, rig, workdir, tmp_path,
                                                        monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    hosts = tmp_path / "xdg" / "corral" / "hosts.toml"
    hosts.parent.mkdir(parents=True)
    hosts.write_text(
        "[hosts.gpubox]\n"
        'launcher = "ssh"\n'
        f'workdir = "{workdir}"\n'
        f'python = "{rig.python}"\n'
        f'ssh = {{ host = "{ssh_host.alias}", config_file = "{ssh_host.ssh_config}" }}\n'
    )
    ws = tmp_path / "ws"
    with experiment(ws, "named", launcher="gpubox") as xp:
        Record(name="r", log=f"{workdir}-log.jsonl").submit()
    (job,) = xp.jobs.values()
    listing = corral("jobs", "ls", "-w", str(ws)).stdout.splitlines()
    assert listing[1].split()[2:5] == ["ssh", "gpubox", "done"]
    show = corral("jobs", "show", job.identifier[:8], "-w", str(ws)).stdout
    assert f"host:      gpubox (corraltest@127.0.0.1:{ssh_host.port})\n" in show


WHY_SCRIPT = """
import sys
from corral import experiment
from corral.connectors.ssh import SSHConnector
from corral.launchers.local import LocalLauncher
from corral.launchers.ssh import SSHLauncher
from tests.execution.tasks import Record

ws, where, alias, config, workdir, python, log = sys.argv[1:]
if __name__ == "__main__":
    if where == "local":
        launcher = LocalLauncher(cpu_slots=1)
    else:
        launcher = SSHLauncher(SSHConnector(alias, config_file=config), workdir=workdir,
                               python=python)
    with experiment(ws, "moved", launcher=launcher):
        Record(name="r", log=log).submit()
"""


def test_why_says_a_job_done_on_another_launcher_runs_again(ssh_host, rig, workdir, tmp_path):
    script = tmp_path / "moved.py"
    script.write_text(WHY_SCRIPT)
    ws = tmp_path / "ws"
    args = [str(ws), "local", ssh_host.alias, str(ssh_host.ssh_config), workdir, rig.python,
            str(tmp_path / "log")]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    subprocess.run([sys.executable, str(script), *args], check=True, env=env, timeout=120)
    args[1] = "ssh"
    why = subprocess.run([sys.executable, "-m", "corral", "why", str(script), *args],
                         capture_output=True, text=True, env=env, timeout=120)
    assert why.returncode == 0, why.stderr
    assert "done on local on " in why.stdout, why.stdout
    assert (f"this run submits it to ssh on corraltest@127.0.0.1:{ssh_host.port}, where it is "
            "not done: it would run again there") in why.stdout
