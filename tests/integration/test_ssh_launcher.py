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
from corral.core.job import JobState
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
        return lambda: launcher_for(ssh_host, rig, workdir, cpu_slots=2)


class TestSSHLauncherOnTheNamespaceHost(LauncherConformance):
    @pytest.fixture
    def launcher_factory(self, ssh_host2, rig, workdir):
        return lambda: launcher_for(ssh_host2, rig, workdir, cpu_slots=2)


# --- client processes that cannot see the remote workdir ---------------------------------

CLIENT = """
import json, sys, time
from pathlib import Path
from corral import experiment
from corral.connectors.ssh import SSHConnector
from corral.launchers.ssh import SSHLauncher
from tests.seed_tasks import Dataset, Documents, Model, Topics
from tests.execution.seed_execution import Evaluate, SampledFold, WritingModelLearn
from tests.execution.tasks import After, GpuRecord, Record

args = json.loads(sys.argv[1])
assert not Path(args["workdir"]).exists() or not any(Path(args["workdir"]).iterdir()), \\
    "the client must not see the remote workdir"


def ssh(alias, cpus, gpus):
    return SSHLauncher(SSHConnector(alias, config_file=args["config"]),
                       workdir=args["workdir"], python=args["python"], cpu_slots=cpus, gpu_slots=gpus,
                       cancel_grace=args.get("cancel_grace", 10.0))


def cancel(launcher):
    # Start a job leaving a child that ignores SIGTERM, cancel it: its final state.
    from corral.core.workspace import Workspace
    from corral.testing import make_job, run_until_final
    from tests.execution.spawn_tasks import SpawnAndSleep

    workspace = Workspace(args["local"])
    job = make_job(SpawnAndSleep(token=args["tag"]), launcher, workspace)
    launcher.start([job], workspace)
    path, deadline = f"{job.directory}/child.pid", time.monotonic() + 60
    while not (launcher.ssh.exists(path) and launcher.ssh.read_text(path)):
        assert time.monotonic() < deadline, "the job never wrote its child's pid"
        time.sleep(0.05)
    child = int(launcher.ssh.read_text(path))
    launcher.cancel([job])
    state, failure = run_until_final(launcher, job)
    return {"child": child, "state": state.value, "reason": failure and failure.reason.value}


def import_error(launcher):
    # A task module only this client can import: without a snapshot, then with one.
    from corral import JobFailedError

    sys.path.insert(0, args["modules"])
    from clientonly.tasks import OnlyHere

    try:
        with experiment(args["local"], "import", launcher=launcher, snapshot=False):
            OnlyHere(x=1).submit()
    except JobFailedError as e:
        (failure,) = e.failures
        without = [failure.reason, failure.message]
    with experiment(args["local"], "import", launcher=launcher):
        OnlyHere(x=2).submit()
    return {"without": without, "with": "done"}


def submit_one(launcher):
    # Submit one job: the error it raises, if any.
    from corral import CorralError

    try:
        with experiment(args["local"], "one", launcher=launcher):
            Record(name="one", log="/dev/null").submit()
    except CorralError as e:
        return {"error": type(e).__name__, "message": str(e)}
    return {"error": None}


SCENARIOS = {"cancel": cancel, "import": import_error, "submit": submit_one}
if args["what"] in SCENARIOS:
    launcher = ssh(args["alias"], 2, 0)
    print(json.dumps(SCENARIOS[args["what"]](launcher)))
    print("finished", flush=True)
    sys.exit(0)

if args["what"] == "pool":
    launcher = SSHLauncher.pool([ssh(h["alias"], h["cpus"], h["gpus"]) for h in args["hosts"]])
else:
    launcher = ssh(args["alias"], args.get("cpus", 2), args.get("gpus", 0))

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
            GpuRecord(name=f"{args['tag']}-{i}", sleep=1.5, log=args["log"]).submit()
    elif args["what"] == "slow":
        Record(name="slow", sleep=args["sleep"], log=args["log"]).submit()
    elif args["what"] == "pool":
        for i in range(3):
            GpuRecord(name=f"g{i}", sleep=1.5, log=args["log"]).submit()
        inputs = [Record(name=f"p{i}", sleep=0.3, log=args["log"]) for i in range(4)]
        for r in inputs:
            r.submit()
        After(before=inputs[-1], log=args["log"]).submit()
if args["what"] == "pool":
    print(json.dumps({
        getattr(j.task, "name", "after"): {
            "alias": j.launcher.ssh.host,
            "output": str(j.task.output) if hasattr(j.task, "output") else None,
        }
        for j in xp.jobs.values()
    }))
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
    gpus_shared_safely_by_two_clients(records)


def gpus_shared_safely_by_two_clients(records: list[dict]) -> None:
    """No two jobs running at the same time had the same GPU, and jobs of the two clients
    (named ``<client>-<i>``) did run at the same time: each client thought both GPUs free,
    so only the leases on the host kept them apart."""
    def overlap(a: dict, b: dict) -> bool:
        return a["start"] < b["end"] and b["start"] < a["end"]

    for a in records:
        for b in records:
            if a is not b and overlap(a, b):
                assert a["cuda"] != b["cuda"], (a, b)
    clients: dict[str, list[dict]] = {}
    for r in records:
        clients.setdefault(r["name"].rsplit("-", 1)[0], []).append(r)
    first, second = clients.values()
    assert any(overlap(a, b) for a in first for b in second), "the clients never overlapped"


def remote_json(c: SSHConnector, path: str) -> dict:
    return json.loads(c.read_text(path))


def wait_remote(c: SSHConnector, pattern: str, timeout: float = 60) -> str:
    """The one remote path matching the glob ``pattern``, once it exists."""
    deadline = time.monotonic() + timeout
    while True:
        found = c.run(["sh", "-c", f"ls -d {pattern} 2>/dev/null || true"]).stdout.split()
        if found:
            return found[0]
        assert time.monotonic() < deadline, f"nothing matches {pattern} after {timeout} s"
        time.sleep(0.1)


def remote_alive(c: SSHConnector, pid: int) -> bool:
    """Whether ``pid`` is a live (not zombie) process on the host."""
    stat = c.run(["sh", "-c", f"cat /proc/{pid}/stat 2>/dev/null || true"]).stdout
    return bool(stat) and stat[stat.rindex(")") + 2] not in "ZX"


def test_client_killed_then_rerun_reattaches(ssh_host, rig, workdir, tmp_path, client_script):
    args = client_args(ssh_host, rig, workdir, tmp_path, what="slow", sleep=6.0)
    c = SSHConnector(ssh_host.alias, config_file=ssh_host.ssh_config)
    first = hidden_home_client(client_script, **args)
    # the job's own process holds its run lock: kill the client while it runs
    run_lock = wait_remote(c, f"{workdir}/jobs/*/*/.corral/run.lock")
    job_dir = run_lock.rsplit("/.corral/", 1)[0]
    handle = remote_json(c, f"{job_dir}/.corral/launch.json")["handle"]
    first.send_signal(signal.SIGKILL)
    first.communicate()
    assert remote_alive(c, handle["pid"]) and not c.exists(f"{job_dir}/.corral/done")
    rerun_started = time.time()
    finish(hidden_home_client(client_script, **args))
    rerun_finished = time.time()
    # one execution, by the process the first client started, still running when the second
    # client came, which waited for it (rather than finding it done, or running it again)
    (record,) = remote_records(ssh_host, args["log"])
    assert record["name"] == "slow" and record["pid"] == handle["pid"]
    assert record["start"] < rerun_started < record["end"] <= rerun_finished
    assert remote_json(c, f"{job_dir}/.corral/launch.json")["handle"] == handle
    # the local pointer says where it ran and that it is done (the re-run brought it up to date)
    (pointer,) = (tmp_path / "local-ws" / "jobs").glob("*/*/.corral/remote.json")
    data = json.loads(pointer.read_text())
    assert data["state"] == "done"
    assert data["remote_dir"] == job_dir and data["handle"] == handle
    assert data["host"] == f"corraltest@127.0.0.1:{ssh_host.port}"
    assert (pointer.parent / "job.sh").read_text() == c.read_text(f"{job_dir}/job.sh")


def test_pointer_is_written_for_jobs_found_by_a_rerun(ssh_host, rig, workdir, tmp_path):
    log = f"{workdir}-log.jsonl"
    with experiment(tmp_path / "first", "found", launcher=launcher_for(ssh_host, rig, workdir)):
        Record(name="done-before", log=log).submit()
    # another client (its own local workspace) finds the job done: it still gets a pointer
    with experiment(
        tmp_path / "second", "found", launcher=launcher_for(ssh_host, rig, workdir)
    ) as xp:
        Record(name="done-before", log=log).submit()
    (job,) = xp.jobs.values()
    (pointer,) = (tmp_path / "second" / "jobs").glob("*/*/.corral/remote.json")
    data = json.loads(pointer.read_text())
    assert data["state"] == "done" and data["remote_dir"] == str(job.directory)
    assert data["handle"] is None  # not known: the job was done before this client came
    assert json.loads((pointer.parent / "params.json").read_text())["job_dir"] == str(
        job.directory
    )
    assert [r["name"] for r in remote_records(ssh_host, log)] == ["done-before"]


def test_missing_module_on_the_host_fails_with_reason_import_unless_snapshot(
    ssh_host, rig, workdir, tmp_path, client_script
):
    # tmp_path is root's (mode 700): the module is importable here, not by the remote user
    (tmp_path / "clientonly").mkdir()
    (tmp_path / "clientonly" / "__init__.py").write_text("")
    (tmp_path / "clientonly" / "tasks.py").write_text(
        "from corral import Param, Task\n"
        "class OnlyHere(Task):\n    x: Param[int]\n    def execute(self):\n        pass\n"
    )
    args = client_args(ssh_host, rig, workdir, tmp_path, what="import", modules=str(tmp_path))
    out = json.loads(finish(hidden_home_client(client_script, **args)).splitlines()[0])
    reason, message = out["without"]
    assert reason == "import"
    assert "ModuleNotFoundError: No module named 'clientonly'" in message
    assert out["with"] == "done"  # with a code snapshot (the default), the module travels


def test_missing_remote_corral_is_a_clear_error(ssh_host, rig, workdir, tmp_path, client_script):
    args = client_args(ssh_host, rig, workdir, tmp_path, what="submit", python="/usr/bin/python3")
    out = json.loads(finish(hidden_home_client(client_script, **args)).splitlines()[0])
    assert out["error"] == "SubmissionError"
    assert "cannot use python '/usr/bin/python3' on corraltest@127.0.0.1" in out["message"]
    assert "No module named 'corral'" in out["message"]


def test_missing_remote_python_is_a_clear_error(ssh_host, rig, workdir, tmp_path, client_script):
    args = client_args(ssh_host, rig, workdir, tmp_path, what="submit", python="/opt/nope/python3")
    out = json.loads(finish(hidden_home_client(client_script, **args)).splitlines()[0])
    assert out["error"] == "SubmissionError"
    assert "cannot use python '/opt/nope/python3'" in out["message"]


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
    with pytest.raises(ConfigError, match="gpu_slots must be an int >= 0"):
        SSHLauncher(c, workdir="/x", gpu_slots=-1)
    with pytest.raises(ConfigError, match="give connector= or host=, not both"):
        SSHLauncher(c, host="h", workdir="/x")


def record_calls(mocker, launcher: SSHLauncher) -> list[tuple[str, dict, object]]:
    """Every agent command of ``launcher``: (command, request, answer), in order."""
    calls: list[tuple[str, dict, object]] = []
    real = launcher.host.call

    def call(command, request):
        answer = real(command, request)
        calls.append((command, request, answer))
        return answer

    mocker.patch.object(launcher.host, "call", side_effect=call)
    return calls


def test_one_round_trip_per_cycle_for_all_jobs(ssh_host, rig, workdir, tmp_path, mocker):
    launcher = launcher_for(ssh_host, rig, workdir, cpu_slots=8)
    calls = record_calls(mocker, launcher)
    log = f"{workdir}-log.jsonl"
    with experiment(tmp_path / "ws", "batched", launcher=launcher):
        for i in range(8):
            Record(name=f"b{i}", sleep=1.0, log=log).submit()
    commands = [command for command, _, _ in calls]
    recovered = [len(r["dirs"]) for command, r, _ in calls if command == "recover"]
    started = [len(r["jobs"]) for command, r, _ in calls if command == "start"]
    # jobs met in the same scheduler cycle share one command (submissions may span 2 cycles)
    assert sum(recovered) == 8 and len(recovered) <= 2
    assert sum(started) == 8 and len(started) <= 2
    assert commands.count("version") == 1
    # each poll is one command carrying every job active at that moment, none twice
    active: set[str] = set()
    polled = []
    for command, request, answer in calls:
        dirs = [j["dir"] for j in request.get("jobs", [])]
        states = {d: a["status"][0] for d, a in zip(dirs, answer, strict=True)} if dirs else {}
        if command == "start":
            active |= {d for d, state in states.items() if state == "running"}
        elif command == "poll":
            assert sorted(dirs) == sorted(active), "a poll must carry every active job"
            polled.append(len(dirs))
            active -= {d for d, state in states.items() if state in ("done", "failed")}
    assert not active
    assert polled and polled.count(8) >= 1  # the jobs sleep 1 s: polled together while running
    assert len(polled) <= 30  # backing off: not a command per job per tick
    assert len(remote_records(ssh_host, log)) == 8


def test_failing_dependents_is_one_command(ssh_host, rig, workdir, tmp_path, mocker):
    from corral import JobFailedError
    from tests.execution.tasks import Part, WithParts

    launcher = launcher_for(ssh_host, rig, workdir, cpu_slots=2)
    calls = record_calls(mocker, launcher)
    per_file = [mocker.spy(launcher.ssh, name) for name in ("mkdir", "write_text", "run")]
    with pytest.raises(JobFailedError) as e:
        with experiment(tmp_path / "ws", "cascade", launcher=launcher) as xp:
            doomed = Record(name="doomed", log="/nonexistent/dir/log.jsonl")  # cannot log: fails
            doomed.submit()
            for i in range(3):
                WithParts(part=Part(label=f"d{i}"), before=doomed).submit()
    assert sorted(f.reason for f in e.value.failures) == ["dependency"] * 3 + ["failed"]
    fails = [r for command, r, _ in calls if command == "fail"]
    assert len(fails) == 1 and len(fails[0]["jobs"]) == 3  # one round trip for the three
    # and no per-file connector calls besides the agent commands themselves
    assert per_file[0].call_count == per_file[1].call_count == 0
    assert per_file[2].call_count == len(calls)
    c = SSHConnector(ssh_host.alias, config_file=ssh_host.ssh_config)
    dependents = [j for j in xp.jobs.values() if isinstance(j.task, WithParts)]
    for job in dependents:
        marker = remote_json(c, f"{job.directory}/.corral/failed")
        assert marker["reason"] == "dependency" and "Record/" in marker["message"]
        pointer = json.loads((job.record / "remote.json").read_text())
        assert pointer["state"] == "failed" and pointer["failure"]["reason"] == "dependency"


def test_version_mismatch_is_a_clear_error(ssh_host, rig, workdir, tmp_path):
    c = SSHConnector(ssh_host.alias, config_file=ssh_host.ssh_config)
    fake = f"{workdir}-python"
    # a remote python whose corral says it is 9.9.0: the agent run through it answers that
    c.write_text(
        fake,
        "#!/bin/sh\n"
        "shift 2  # -m corral.host.agent\n"
        f"exec {rig.python} -c 'import runpy, sys, corral._version as v; v.__version__ = \"9.9.0\"; "
        "sys.argv[0] = \"corral.host.agent\"; runpy.run_module(\"corral.host.agent\", "
        "run_name=\"__main__\")' \"$@\"\n",
        mode=0o755,
    )
    try:
        launcher = SSHLauncher(c, workdir=workdir, python=fake)
        with pytest.raises(SubmissionError) as e:
            with experiment(tmp_path / "ws", "version", launcher=launcher):
                Record(name="x", log="/dev/null").submit()
    finally:
        c.remove(fake)
    from corral import __version__

    message = str(e.value)
    assert message.startswith(f"corraltest@127.0.0.1:{ssh_host.port}: python ")
    assert f"has corral 9.9.0, this client has {__version__}: install the same version" in message
    assert not (tmp_path / "ws" / "jobs").exists() or not any((tmp_path / "ws" / "jobs").iterdir())


def test_pool_over_two_hosts_uses_both_by_free_cpus_and_gpus(
    ssh_host, ssh_host2, rig, workdir, tmp_path, client_script
):
    hosts = {ssh_host.alias: ssh_host, ssh_host2.alias: ssh_host2}
    args = client_args(ssh_host, rig, workdir, tmp_path, what="pool", hosts=[
        {"alias": ssh_host.alias, "cpus": 4, "gpus": 1},
        {"alias": ssh_host2.alias, "cpus": 4, "gpus": 2},
    ])
    out = finish(hidden_home_client(client_script, **args), timeout=180).splitlines()
    placed = json.loads(out[0])
    on = {alias: {n for n, p in placed.items() if p["alias"] == alias} for alias in hosts}
    # GPU jobs: most free GPUs first (host2), then host1's one GPU, then host2's second;
    # CPU jobs by free share of CPUs; the dependent with its input
    assert on[ssh_host2.alias] >= {"g0", "g2"} and "g1" in on[ssh_host.alias]
    assert all(on[alias] & {"p0", "p1", "p2", "p3"} for alias in hosts)
    assert placed["after"]["alias"] == placed["p3"]["alias"]
    # each host's outputs and log, read through that host's own connection
    logs = {}
    for alias, host in hosts.items():
        c = SSHConnector(alias, config_file=host.ssh_config)
        for name in on[alias] - {"after"}:
            assert c.read_text(placed[name]["output"]) == name
        logs[alias] = {r["name"]: r for r in remote_records(host, args["log"])}
        assert on[alias] <= set(logs[alias])
    assert logs[placed["after"]["alias"]]["after"]["saw"] == "p3"
    for alias in hosts:  # on each host, GPU jobs overlapping in time never share a GPU
        gpu = [logs[alias][n] for n in on[alias] if n.startswith("g")]
        for a in gpu:
            for b in gpu:
                if a is not b and a["start"] < b["end"] and b["start"] < a["end"]:
                    assert a["cuda"] != b["cuda"], (a, b)


def test_gpu_leases_are_the_machines_across_workdirs(
    ssh_host, rig, workdir, tmp_path, client_script
):
    log = f"{workdir}-log.jsonl"
    common = client_args(ssh_host, rig, workdir, tmp_path, what="gpu", n=3, cpus=4, gpus=2)
    clients = [
        hidden_home_client(client_script, **{**common, "tag": tag, "workdir": f"{workdir}{tag}",
                                             "log": log, "local": str(tmp_path / f"local-{tag}")})
        for tag in ("-a", "-b")
    ]
    try:
        for c in clients:
            finish(c)
    finally:
        SSHConnector(ssh_host.alias, config_file=ssh_host.ssh_config).run(
            ["rm", "-rf", "--", f"{workdir}-a", f"{workdir}-b"]
        )
    records = remote_records(ssh_host, log)
    assert len(records) == 6
    assert {r["cuda"] for r in records} == {"0", "1"}
    assert {r["taskdir"].split("/jobs/")[0] for r in records} == {f"{workdir}-a", f"{workdir}-b"}
    gpus_shared_safely_by_two_clients(records)  # two workdirs, one machine


@pytest.mark.parametrize("which", ["ssh_host", "ssh_host2"])
def test_cancel_kills_what_survives_sigterm_in_the_process_group(
    request, rig, workdir, tmp_path, client_script, which
):
    host = request.getfixturevalue(which)
    args = client_args(host, rig, workdir, tmp_path, what="cancel", tag=which, cancel_grace=1.0)
    out = json.loads(finish(hidden_home_client(client_script, **args)).splitlines()[0])
    assert (out["state"], out["reason"]) == ("failed", "killed")
    c = SSHConnector(host.alias, config_file=host.ssh_config)
    assert not remote_alive(c, out["child"])  # it ignored SIGTERM: SIGKILL after the grace


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


def test_a_secret_travels_to_the_host_into_an_owner_only_file(ssh_host, rig, workdir, tmp_path):
    from tests.execution.test_secrets import VALUE, UsesToken

    out = f"{workdir}-seen.json"
    task = UsesToken(out=out)
    with experiment(tmp_path / "local-ws", "secret", launcher=launcher_for(ssh_host, rig, workdir)):
        task.submit()
    c = SSHConnector(ssh_host.alias, config_file=ssh_host.ssh_config)
    assert json.loads(c.read_text(out)) == {"token": VALUE, "plain": "visible"}
    job_dir = str(task.__taskdir__)
    modes = c.run(["stat", "-c", "%a %n", job_dir, f"{job_dir}/.corral/secrets.env"],
                  check=True).stdout.split()
    assert modes[0::2] == ["700", "600"]
    assert "s3cr3t" not in c.read_text(f"{job_dir}/job.sh")
    for path in (tmp_path / "local-ws").rglob("*"):  # the laptop keeps no copy of it
        # (code/ is the project's source snapshot: this file, which spells the value out)
        if path.is_file() and "code" not in path.relative_to(tmp_path / "local-ws").parts:
            assert "s3cr3t" not in path.read_text(errors="replace"), path
    c.remove(out)


def test_a_workdir_named_corral_in_home_does_not_hide_the_package(ssh_host, rig, tmp_path):
    c = SSHConnector(ssh_host.alias, config_file=ssh_host.ssh_config)
    c.run(["rm", "-rf", "--", f"{REMOTE_HOME}/corral"], check=True)
    try:
        log = f"{REMOTE_HOME}/corral-named-log.jsonl"
        launcher = launcher_for(ssh_host, rig, "~/corral")  # `python -m` would import it
        with experiment(tmp_path / "ws", "named-corral", launcher=launcher):
            Record(name="home", log=log).submit()
        assert [r["name"] for r in remote_records(ssh_host, log)] == ["home"]
    finally:
        c.run(["rm", "-rf", "--", f"{REMOTE_HOME}/corral", f"{REMOTE_HOME}/corral-named-log.jsonl"])


def test_nested_generated_paths_are_the_remote_paths_in_the_client(ssh_host, rig, workdir, tmp_path):
    from tests.execution.model_tasks import Encoder, Model, Train

    launcher = launcher_for(ssh_host, rig, workdir)
    model = Model(encoder=Encoder())
    train = Train(model=model, extra=[Encoder(size=2)])
    with experiment(tmp_path / "ws", "nested-remote", launcher=launcher, progress=False) as xp:
        train.submit()
    (job,) = xp.jobs.values()
    assert str(job.directory).startswith(workdir)
    assert model.weights == job.directory / "out/model/weights.pt"
    assert train.extra[0].vocab == job.directory / "out/extra/0/vocab.txt"
    c = SSHConnector(ssh_host.alias, config_file=ssh_host.ssh_config)
    seen = json.loads(c.run(["cat", str(job.directory / "seen.json")]).stdout)
    assert seen["weights"] == str(model.weights)  # the job saw the path the client knows
    assert seen["extra0"] == str(train.extra[0].vocab)
    local = launcher.fetch(job, tmp_path / "copy")  # and a fetched copy has it at its place
    assert (local / model.weights.relative_to(job.directory)).read_text() == "weights"


def test_packed_jobs_on_an_ssh_host_run_once_through_a_killed_worker(ssh_host, rig, workdir,
                                                                    tmp_path):
    from corral.launchers.packing import Pack
    from tests.execution.model_tasks import Append

    c = SSHConnector(ssh_host.alias, config_file=ssh_host.ssh_config)
    out = f"{workdir}/out"
    c.run(["mkdir", "-p", out], check=True)
    launcher = launcher_for(ssh_host, rig, workdir, cpu_slots=4,
                            pack=Pack(workers=2, per_worker=2, idle="3s"))
    tasks = [Append(token=str(i), seconds=0.05, out=out) for i in range(120)]
    killed: list[str] = []

    def kill_a_worker() -> None:  # once some jobs are done, SIGKILL one worker process
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not killed:
            done = c.run(["sh", "-c", f"ls {out} | wc -l"]).stdout.strip()
            if done.isdigit() and int(done) >= 20:
                found = c.run(["sh", "-c", f"cat {workdir}/.corral/pack/*/processes.json"])
                workers = json.loads(found.stdout or "[]")
                if workers:
                    c.run(["kill", "-9", str(workers[0]["handle"]["pid"])])
                    killed.append(workers[0]["wid"])
            time.sleep(0.2)

    import threading

    killer = threading.Thread(target=kill_a_worker)
    killer.start()
    with experiment(tmp_path / "ws", "packed-ssh", launcher=launcher, progress=False) as xp:
        for task in tasks:
            task.submit()
    killer.join()
    assert killed, "no worker was killed"
    assert all(j.state.value == "done" for j in xp.jobs.values())
    counts = c.run(["sh", "-c", f"cat {out}/* | wc -l; ls {out} | wc -l"]).stdout.split()
    assert counts == ["120", "120"]  # every job once
    assert launcher.host.calls["start"] == 1 and "poll" not in launcher.host.calls
    rerun = launcher_for(ssh_host, rig, workdir, cpu_slots=4, pack=Pack(workers=2, per_worker=2))
    with experiment(tmp_path / "ws", "packed-ssh", launcher=rerun, progress=False) as again:
        for task in tasks:
            Append(token=task.token, seconds=0.05, out=out).submit()
    assert all(j.state is JobState.DONE for j in again.jobs.values())
    after = c.run(["sh", "-c", f"cat {out}/* | wc -l; ls {out} | wc -l"]).stdout.split()
    assert after == ["120", "120"]  # the re-run ran nothing again
