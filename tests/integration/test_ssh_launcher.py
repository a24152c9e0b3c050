"""The SSH launcher against the rig: the test user on the loopback sshd and the netns host.

Client processes run under ``unshare -m`` with a tmpfs over the test user's home, so the
client cannot see the remote workdir: nothing here can silently rely on a shared filesystem.
What a test checks of the remote side, it reads through an SSH connector.
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

from corral import ConfigError, SubmissionError, experiment
from corral.connectors.ssh import SSHConnector, close_all
from corral.launchers.local import LocalLauncher
from corral.launchers.ssh import SSHLauncher
from corral.testing import LauncherConformance
from tests.execution.tasks import Record

REPO = Path(__file__).resolve().parents[2]
REMOTE_HOME = "/home/corraltest"


@pytest.fixture(autouse=True)
def fresh_pool():
    yield
    close_all()


@pytest.fixture
def workdir(ssh_host) -> str:
    """A fresh remote workdir, removed afterwards."""
    path = f"{REMOTE_HOME}/ws-{uuid.uuid4().hex[:10]}"
    yield path
    c = SSHConnector(ssh_host.alias, config_file=ssh_host.ssh_config)
    c.run(["sh", "-c", f"pkill -u corraltest -f {path} || true; rm -rf -- {path}"])


def launcher_for(host, rig, workdir, **options) -> SSHLauncher:
    return SSHLauncher(
        SSHConnector(host.alias, config_file=host.ssh_config),
        workdir=workdir,
        python=rig.python,
        **options,
    )


class TestSSHLauncher(LauncherConformance):
    @pytest.fixture
    def launcher_factory(self, ssh_host, rig, workdir):
        return lambda: launcher_for(ssh_host, rig, workdir, cpus=2)


class TestSSHLauncherOnTheNamespaceHost(LauncherConformance):
    @pytest.fixture
    def launcher_factory(self, ssh_host2, rig, workdir):
        return lambda: launcher_for(ssh_host2, rig, workdir, cpus=2)


# --- client processes that cannot see the remote workdir ---------------------------------

CLIENT = """
import json, sys, time
from pathlib import Path
from corral import experiment
from corral.connectors.ssh import SSHConnector
from corral.launchers.ssh import SSHLauncher
from tests.seed_tasks import Dataset, Documents, Model, Topics
from tests.execution.seed_execution import Evaluate, SampledFold, WritingModelLearn
from tests.execution.tasks import GpuRecord, Record

args = json.loads(sys.argv[1])
assert not Path(args["workdir"]).exists() or not any(Path(args["workdir"]).iterdir()), \\
    "the client must not see the remote workdir"
launcher = SSHLauncher(SSHConnector(args["alias"], config_file=args["config"]),
                       workdir=args["workdir"], python=args["python"],
                       cpus=args.get("cpus", 2), gpus=args.get("gpus", 0))

with experiment(args["local"], "remote", launcher=launcher) as xp:
    if args["what"] == "seed":
        learn = WritingModelLearn(model=Model(hidden=5))
        learn.submit()
        fold = SampledFold(dataset=Dataset(topics=Topics(path="/t"),
                                           documents=Documents(path="/d")), log=args["log"])
        Evaluate(dataset=fold.submit(), log=args["log"]).submit()
        print(json.dumps({"parameters": str(learn.parameters)}))
    elif args["what"] == "gpu":
        for i in range(args["n"]):
            GpuRecord(name=f"{args['tag']}-{i}", sleep=0.6, log=args["log"]).submit()
    elif args["what"] == "slow":
        Record(name="slow", sleep=args["sleep"], log=args["log"]).submit()
print("finished", flush=True)
"""


@pytest.fixture
def client_script(tmp_path) -> Path:
    path = tmp_path / "client.py"
    path.write_text(textwrap.dedent(CLIENT))
    return path


def hidden_home_client(script: Path, **args) -> subprocess.Popen:
    """Run the client with the remote user's home hidden under a private tmpfs."""
    command = (
        f"mount -t tmpfs none {REMOTE_HOME} && "
        f"exec {sys.executable} {script} '{json.dumps(args)}'"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(["unshare", "-m", "sh", "-c", command], env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen, timeout: float = 120) -> str:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    return out


def remote_records(host, log: str) -> list[dict]:
    c = SSHConnector(host.alias, config_file=host.ssh_config)
    if not c.exists(log):
        return []
    return [json.loads(x) for x in c.read_text(log).splitlines() if x]


def client_args(host, rig, workdir, tmp_path, **extra) -> dict:
    return {"alias": host.alias, "config": str(host.ssh_config), "workdir": workdir,
            "python": rig.python, "local": str(tmp_path / "local-ws"),
            "log": f"{workdir}-log.jsonl", **extra}


@pytest.mark.parametrize("which", ["ssh_host", "ssh_host2"])
def test_seed_tasks_run_remotely(request, rig, workdir, tmp_path, client_script, which):
    host = request.getfixturevalue(which)
    args = client_args(host, rig, workdir, tmp_path, what="seed")
    out = finish(hidden_home_client(client_script, **args)).splitlines()
    parameters = json.loads(out[0])["parameters"]
    assert parameters.startswith(f"{workdir}/jobs/tests.execution.seed_execution.WritingModelLearn/")
    c = SSHConnector(host.alias, config_file=host.ssh_config)
    assert c.read_text(parameters) == "weights of 5"
    names = {r["name"]: r for r in remote_records(host, args["log"])}
    assert names["evaluate"]["topics"] == "q1\tsampled\n"
    assert names["evaluate"]["start"] >= names["fold"]["end"]
    # the local workspace keeps a pointer per job, no remote files
    pointers = list((tmp_path / "local-ws" / "jobs").glob("*/*/.corral/remote.json"))
    assert len(pointers) == 3
    record = json.loads(pointers[0].read_text())
    assert record["remote_dir"].startswith(f"{workdir}/jobs/")
    assert record["state"] == "done"


def test_gpu_slots_are_leased_on_the_host_across_two_clients(
    ssh_host, rig, workdir, tmp_path, client_script
):
    common = client_args(ssh_host, rig, workdir, tmp_path, what="gpu", n=3, cpus=4, gpus=2)
    clients = [
        hidden_home_client(client_script, **{**common, "tag": tag,
                                             "local": str(tmp_path / f"local-{tag}")})
        for tag in ("a", "b")
    ]
    for c in clients:
        finish(c)
    records = remote_records(ssh_host, common["log"])
    assert len(records) == 6
    assert {r["cuda"] for r in records} == {"0", "1"}
    for a in records:  # no two jobs overlapping in time ever shared a GPU
        for b in records:
            if a is not b and a["start"] < b["end"] and b["start"] < a["end"]:
                assert a["cuda"] != b["cuda"], (a, b)


def test_client_killed_then_rerun_reattaches(ssh_host, rig, workdir, tmp_path, client_script):
    args = client_args(ssh_host, rig, workdir, tmp_path, what="slow", sleep=3.0)
    first = hidden_home_client(client_script, **args)
    deadline = time.monotonic() + 30
    while not remote_records(ssh_host, args["log"]) and time.monotonic() < deadline:
        time.sleep(0.2)
    first.send_signal(signal.SIGKILL)
    first.communicate()
    finish(hidden_home_client(client_script, **args))
    # one execution (the first client's), finished after the second client re-attached
    assert [r["name"] for r in remote_records(ssh_host, args["log"])] == ["slow"]


def test_missing_module_on_the_host_fails_with_reason_import(ssh_host, rig, workdir, tmp_path):
    # tmp_path is root's (mode 700): the module is importable here, not by the remote user
    (tmp_path / "clientonly").mkdir()
    (tmp_path / "clientonly" / "__init__.py").write_text("")
    (tmp_path / "clientonly" / "tasks.py").write_text(
        "from corral import Param, Task\n"
        "class OnlyHere(Task):\n    x: Param[int]\n    def execute(self):\n        pass\n"
    )
    sys.path.insert(0, str(tmp_path))
    try:
        from clientonly.tasks import OnlyHere
    finally:
        sys.path.remove(str(tmp_path))
    from corral import JobFailedError

    with pytest.raises(JobFailedError) as e:
        with experiment(tmp_path / "ws", "import", launcher=launcher_for(ssh_host, rig, workdir)):
            OnlyHere(x=1).submit()
    (failure,) = e.value.failures
    assert failure.reason == "import"
    assert "ModuleNotFoundError: No module named 'clientonly'" in failure.message


def test_missing_remote_corral_is_a_clear_error(ssh_host, workdir, tmp_path):
    launcher = SSHLauncher(SSHConnector(ssh_host.alias, config_file=ssh_host.ssh_config),
                           workdir=workdir, python="/usr/bin/python3")
    with pytest.raises(SubmissionError) as e:
        with experiment(tmp_path / "ws", "nocorral", launcher=launcher):
            Record(name="x", log="/dev/null").submit()
    message = str(e.value)
    assert "cannot use python '/usr/bin/python3' on corraltest@127.0.0.1" in message
    assert "No module named 'corral'" in message


def test_missing_remote_python_is_a_clear_error(ssh_host, workdir, tmp_path):
    launcher = SSHLauncher(SSHConnector(ssh_host.alias, config_file=ssh_host.ssh_config),
                           workdir=workdir, python="/opt/nope/python3")
    with pytest.raises(SubmissionError, match="cannot use python '/opt/nope/python3'"):
        with experiment(tmp_path / "ws", "nopython", launcher=launcher):
            Record(name="x", log="/dev/null").submit()


def test_dependency_on_another_host_is_refused(ssh_host, rig, workdir, tmp_path):
    from tests.execution.tasks import After

    remote = launcher_for(ssh_host, rig, workdir)
    with pytest.raises(ConfigError, match="must run where the outputs it depends on are"):
        with experiment(tmp_path / "ws", "cross", launcher=LocalLauncher()):
            first = Record(name="r", log=str(tmp_path / "log"))
            first.submit(launcher=remote)
            After(before=first, log=str(tmp_path / "log")).submit()


def test_bad_workdir_and_options(ssh_host):
    c = SSHConnector(ssh_host.alias, config_file=ssh_host.ssh_config)
    with pytest.raises(ConfigError, match="workdir must be an absolute remote path"):
        SSHLauncher(c, workdir="relative/dir")
    with pytest.raises(ConfigError, match="gpus must be an int >= 0"):
        SSHLauncher(c, workdir="/x", gpus=-1)
    with pytest.raises(ConfigError, match="give connector= or host=, not both"):
        SSHLauncher(c, host="h", workdir="/x")


def test_one_round_trip_per_cycle_for_all_jobs(ssh_host, rig, workdir, tmp_path, mocker):
    launcher = launcher_for(ssh_host, rig, workdir, cpus=8)
    calls = mocker.spy(launcher.host, "call")
    log = f"{workdir}-log.jsonl"
    with experiment(tmp_path / "ws", "batched", launcher=launcher):
        for i in range(8):
            Record(name=f"b{i}", sleep=0.5, log=log).submit()
    commands = [c.args[0] for c in calls.call_args_list]
    recovered = [len(c.args[1]["dirs"]) for c in calls.call_args_list if c.args[0] == "recover"]
    started = [len(c.args[1]["jobs"]) for c in calls.call_args_list if c.args[0] == "start"]
    # jobs met in the same scheduler cycle share one command (submissions may span 2 cycles)
    assert sum(recovered) == 8 and len(recovered) <= 2
    assert sum(started) == 8 and len(started) <= 2
    assert commands.count("version") == 1
    polls = commands.count("poll")
    assert 1 <= polls <= 8  # a poll covers every active job, not one job
    assert len(remote_records(ssh_host, log)) == 8


def test_pool_over_two_hosts_uses_both_and_keeps_dependents_with_their_inputs(
    ssh_host, ssh_host2, rig, workdir, tmp_path
):
    from tests.execution.tasks import After

    log = f"{workdir}-log.jsonl"
    pool = SSHLauncher.pool([
        launcher_for(ssh_host, rig, workdir, cpus=2),
        launcher_for(ssh_host2, rig, workdir, cpus=2),
    ])
    with experiment(tmp_path / "ws", "pool", launcher=pool) as xp:
        firsts = [Record(name=f"p{i}", sleep=0.3, log=log) for i in range(6)]
        for r in firsts:
            r.submit()
        after = After(before=firsts[-1], log=log)
        after.submit()
    hosts = {str(j.launcher.ssh.destination) for j in xp.jobs.values()}
    assert hosts == {f"corraltest@127.0.0.1:{ssh_host.port}", f"corraltest@{ssh_host2.host}:22"}
    jobs = list(xp.jobs.values())
    assert jobs[-1].launcher is jobs[-2].launcher  # the dependent went where its input is
    names = sorted(r["name"] for r in remote_records(ssh_host, log))
    assert names == ["after", "p0", "p1", "p2", "p3", "p4", "p5"]


def test_fetch_a_job_directory_and_follow_its_log(ssh_host, rig, workdir, tmp_path):
    from tests.execution.tasks import Echo

    launcher = launcher_for(ssh_host, rig, workdir)
    with experiment(tmp_path / "ws", "fetch", launcher=launcher) as xp:
        task = Echo(text="fetched ✓")
        task.submit()
    (job,) = xp.jobs.values()
    local = launcher.fetch(job, tmp_path / "copy")
    assert json.loads((local / "echo.json").read_text())["text"] == "fetched ✓"
    assert (local / ".corral" / "done").exists()
    assert (local / "job.sh").read_text() == launcher.script_for(job)


def test_follow_streams_a_running_job_until_it_ends(ssh_host, rig, workdir, tmp_path):
    from corral.core.workspace import Workspace
    from corral.testing import make_job, run_until_final
    from tests.execution.tasks import Talk

    launcher = launcher_for(ssh_host, rig, workdir)
    job = make_job(Talk(lines=5), launcher, Workspace(tmp_path / "ws"))
    launcher.start([job], Workspace(tmp_path / "ws"))
    started = time.monotonic()
    text = "".join(launcher.follow(job))
    assert text.splitlines() == [f"line {i}" for i in range(5)]
    assert time.monotonic() - started >= 0.5  # it streamed while the job ran
    assert run_until_final(launcher, job)[0].value == "done"
