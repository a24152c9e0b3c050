"""The SLURM launcher against the rig's real slurmctld/slurmd, locally and over SSH."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest

from corral import ConfigError, ConnectorError, JobFailedError, experiment
from corral.app.plugins import Plugins
from corral.connectors.ssh import SSHConnector, close_all
from corral.core.job import JobState
from corral.core.workspace import Workspace
from corral.launchers.slurm import SlurmLauncher
from corral.ops.control import refresh
from corral.ops.inventory import read_experiment
from corral.testing import LauncherConformance
from tests.execution.rerun import Reruns, check, fail_then_rerun
from tests.execution.tasks import After, Fail, Record, read_log

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slurm


@pytest.fixture(autouse=True)
def fresh_pool():
    yield
    close_all()


class TestSlurmLauncher(LauncherConformance):
    @pytest.fixture
    def launcher_factory(self, slurm_cluster):
        return lambda: SlurmLauncher(time="5")


@pytest.fixture
def remote_workdir(ssh_host) -> str:
    path = f"/home/corraltest/slurm-{uuid.uuid4().hex[:10]}"
    yield path
    SSHConnector(ssh_host.alias, config_file=ssh_host.ssh_config).run(["rm", "-rf", "--", path])


class TestSlurmLauncherOverSSH(LauncherConformance):
    @pytest.fixture
    def launcher_factory(self, slurm_cluster, ssh_host, rig, remote_workdir):
        return lambda: SlurmLauncher(
            SSHConnector(ssh_host.alias, config_file=ssh_host.ssh_config),
            workdir=remote_workdir,
            python=rig.python,
            time="5",
        )


@pytest.mark.parametrize("over_ssh", [False, True], ids=["local", "ssh"])
def test_seed_tasks_run_on_slurm(slurm_cluster, ssh_host, rig, remote_workdir, tmp_path, over_ssh):
    from tests.execution.seed_execution import Evaluate, SampledFold, WritingModelLearn
    from tests.seed_tasks import Dataset, Documents, Model, Topics

    if over_ssh:  # job directories and the log on the login node's side
        ssh = SSHConnector(ssh_host.alias, config_file=ssh_host.ssh_config)
        launcher = SlurmLauncher(ssh, workdir=remote_workdir, python=rig.python, time="5")
        log = f"{remote_workdir}-log"
    else:
        launcher, log = SlurmLauncher(time="5"), str(tmp_path / "log")
    with experiment(tmp_path / "ws", "seed", launcher=launcher):
        learn = WritingModelLearn(model=Model(hidden=9))
        learn.submit()
        fold = SampledFold(dataset=Dataset(topics=Topics(path="/t"), documents=Documents(path="/d")),
                           log=log)
        Evaluate(dataset=fold.submit(), log=log).submit()
    if over_ssh:
        assert ssh.read_text(str(learn.parameters)) == "weights of 9"
        lines = ssh.read_text(log).splitlines()
        ssh.run(["rm", "-f", "--", log])
    else:
        assert learn.parameters.read_bytes() == b"weights of 9"
        lines = Path(log).read_text().splitlines()
    records = {r["name"]: r for r in map(json.loads, lines)}
    assert records["evaluate"]["start"] >= records["fold"]["end"]


def test_fifty_tasks_go_out_as_one_array(slurm_cluster, tmp_path, mocker):
    launcher = SlurmLauncher(time="5")
    status_calls: list[list[str]] = []
    run = launcher.run

    def recording_run(argv: list[str]):
        if argv[0] in ("squeue", "sacct") and argv[argv.index("-j") + 1] != "1":
            status_calls.append(argv)  # not the one-off probe for accounting (-j 1)
        return run(argv)

    mocker.patch.object(launcher, "run", side_effect=recording_run)
    polls = mocker.spy(launcher, "poll")
    log = tmp_path / "log"
    start = time.monotonic()
    with experiment(tmp_path / "ws", "array", launcher=launcher) as xp:
        for i in range(50):
            Record(name=f"a{i}", log=log).submit()
    elapsed = time.monotonic() - start
    assert len(read_log(log)) == 50
    assert launcher.counts["sbatch"] == 1
    (array,) = {j.handle["array"] for j in xp.jobs.values()}
    # Every status command asks about the whole array at once: one per poll cycle, plus
    # (sacct mode) one squeue for the jobs slurmdbd does not know yet, never one per job.
    assert status_calls
    assert all(argv[argv.index("-j") + 1] == array for argv in status_calls)
    cycles = polls.call_count
    assert launcher.accounting() or len(status_calls) == cycles
    assert cycles <= len(status_calls) <= 2 * cycles
    # The scheduler polls no faster than min_poll_interval, however often jobs change state.
    assert cycles <= 1 + elapsed / launcher.min_poll_interval
    assert len(status_calls) < 50


def test_chain_runs_without_the_client_and_a_failed_parent_ends_its_dependents(
    slurm_cluster, tmp_path
):
    log = tmp_path / "log"
    launcher = SlurmLauncher(time="5")
    with experiment(tmp_path / "ws", "chain", launcher=launcher, wait=False) as xp:
        ok = Record(name="parent", sleep=1.0, log=log)
        ok.submit()
        After(before=ok, log=log).submit()
        bad = Fail(how="raise", log=log)
        bad.submit()
        FailingChild(parent=bad, log=str(log)).submit()
    assert launcher.counts["sbatch"] == 3  # the parents, then one afterok array per parent
    jobs = {j.type_id.rsplit(".", 1)[-1]: j for j in xp.jobs.values()}
    for array in {j.handle["array"] for j in jobs.values()}:  # the client is gone: SLURM alone
        slurm_cluster.wait(array, timeout=120)
    statuses = launcher.poll(list(jobs.values()))
    reasons = {name: (statuses[j][0].value, statuses[j][1] and statuses[j][1].reason.value)
               for name, j in jobs.items()}
    assert reasons == {
        "Record": ("done", None),
        "After": ("done", None),
        "Fail": ("failed", "failed"),
        "FailingChild": ("failed", "dependency"),  # cancelled by SLURM, never run
    }
    assert sorted(r["name"] for r in read_log(log)) == ["after", "fail-raise", "parent"]


def test_bad_partition_is_rejected_naming_the_option_and_the_valid_ones(slurm_cluster, tmp_path):
    launcher = SlurmLauncher(partition="gpux")
    with pytest.raises(JobFailedError) as e:
        with experiment(tmp_path / "ws", "rejected", launcher=launcher):
            Record(name="r", log=tmp_path / "log").submit()
    (failure,) = e.value.failures
    assert failure.reason == "rejected"
    partitions = ", ".join(slurm_cluster.partitions)
    assert failure.message.endswith(
        f"sbatch refused --partition=gpux: Invalid partition name specified; "
        f"partitions: {partitions} (did you mean 'gpu'?)"
    ), failure.message


def test_bad_options_are_refused_before_submission():
    with pytest.raises(ConfigError, match="time '90 minutes'"):
        SlurmLauncher(time="90 minutes")
    with pytest.raises(ConfigError, match="unknown SLURM option 'partiton'"):
        SlurmLauncher().with_(partiton="short")
    assert SlurmLauncher().with_(partition="short").options.partition == "short"


@pytest.mark.cgroup
def test_job_over_its_memory_ends_oom(slurm_cluster, tmp_path):
    launcher = SlurmLauncher(mem="64M", time="5")
    with pytest.raises(JobFailedError) as e:
        with experiment(tmp_path / "ws", "oom", launcher=launcher):
            Hog(megabytes=400).submit()
    assert [f.reason for f in e.value.failures] == ["oom"]


@pytest.mark.cgroup
def test_after_an_oom_the_dependent_never_runs_and_a_rerun_runs_only_what_failed(
    slurm_cluster, tmp_path
):
    check(fail_then_rerun(tmp_path, SlurmLauncher(mem="64M", time="5"), "oom"), "oom", "oom")


def test_after_a_scancel_the_dependent_never_runs_and_a_rerun_runs_only_what_failed(
    slurm_cluster, tmp_path
):
    def scancel(job):  # the user, by hand
        slurm_cluster.command("scancel", job.handle["id"])

    runs = fail_then_rerun(tmp_path, SlurmLauncher(time="5"), "scancel", while_running=scancel)
    check(runs, "scancel", "cancelled")


CLIENT = """
import json, sys, time
from corral import experiment
from corral.connectors.ssh import SSHConnector
from corral.launchers.slurm import SlurmLauncher
from tests.execution.tasks import Record

args = json.loads(sys.argv[1])
launcher = SlurmLauncher(SSHConnector(args["alias"], config_file=args["config"]),
                         workdir=args["workdir"], python=args["python"], time="5")
polls = 0
poll = launcher.poll

def counting_poll(jobs):
    global polls
    polls += 1
    return poll(jobs)

launcher.poll = counting_poll
start = time.monotonic()
with experiment(args["local"], "slurm-ssh", launcher=launcher):
    for i in range(args["n"]):
        Record(name=f"r{i}", sleep=args["sleep"], log=args["log"]).submit()
print(json.dumps({**launcher.counts, "agent": dict(launcher.host.calls),
                  "ssh_operations": launcher.connector.operations, "polls": polls,
                  "elapsed": time.monotonic() - start}), flush=True)
"""


def ssh_client(tmp_path, **args) -> subprocess.Popen:
    script = tmp_path / "client.py"
    script.write_text(textwrap.dedent(CLIENT))
    command = ("mount -t tmpfs none /home/corraltest && "
               f"exec {sys.executable} {script} '{json.dumps(args)}'")
    return subprocess.Popen(["unshare", "-m", "sh", "-c", command],
                            env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_over_ssh_with_a_constant_number_of_round_trips(
    slurm_cluster, ssh_host, rig, remote_workdir, tmp_path
):
    args = {"alias": ssh_host.alias, "config": str(ssh_host.ssh_config),
            "workdir": remote_workdir, "python": rig.python, "local": str(tmp_path / "ws"),
            "log": f"{remote_workdir}-log", "n": 30, "sleep": 0}
    out, err = ssh_client(tmp_path, **args).communicate(timeout=180)
    assert out, err
    counts = json.loads(out)
    assert counts["sbatch"] == 1  # 30 job directories uploaded and submitted in one command
    agent = counts.pop("agent")
    assert agent["version"] == agent["recover"] == agent["start"] == 1
    # polling, backing off: per poll cycle one status call (sacct, plus squeue for the jobs
    # slurmdbd does not know yet; one sacct more probes for accounting) and at most one
    # marker read for the jobs that ended, whatever the number of jobs
    polls, elapsed = counts.pop("polls"), counts.pop("elapsed")
    assert 1 <= polls <= 1 + elapsed / SlurmLauncher.min_poll_interval
    assert counts.get("squeue", 0) + counts.get("sacct", 0) <= 2 * polls + 1
    assert agent.get("inspect", 0) <= polls
    # every SSH round trip is one of those counted: nothing is done per job
    slurm_commands = sum(v for k, v in counts.items() if k not in ("sbatch", "ssh_operations"))
    assert counts["ssh_operations"] == sum(agent.values()) + slurm_commands
    c = SSHConnector(ssh_host.alias, config_file=ssh_host.ssh_config)
    assert len(c.read_text(args["log"]).splitlines()) == 30
    c.remove(args["log"])
    # the laptop keeps a pointer per job: where it ran, its SLURM id, its last known state
    pointers = [json.loads(p.read_text())
                for p in (tmp_path / "ws" / "jobs").glob("*/*/.corral/remote.json")]
    assert len(pointers) == 30
    assert {(p["launcher"], p["state"], p["alias"]) for p in pointers} == {
        ("slurm", "done", ssh_host.alias)
    }
    assert all(p["remote_dir"].startswith(remote_workdir) and "_" in p["handle"]["id"]
               for p in pointers)


def test_client_killed_then_rerun_reattaches_without_resubmitting(
    slurm_cluster, ssh_host, rig, remote_workdir, tmp_path
):
    args = {"alias": ssh_host.alias, "config": str(ssh_host.ssh_config),
            "workdir": remote_workdir, "python": rig.python, "local": str(tmp_path / "ws"),
            "log": f"{remote_workdir}-log", "n": 2, "sleep": 4}
    c = SSHConnector(ssh_host.alias, config_file=ssh_host.ssh_config)
    first = ssh_client(tmp_path, **args)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not c.exists(f"{remote_workdir}/.corral/arrays"):
        time.sleep(0.2)
    time.sleep(1.0)
    first.send_signal(signal.SIGKILL)
    first.communicate()
    out, err = ssh_client(tmp_path, **args).communicate(timeout=180)
    assert out, err
    assert json.loads(out).get("sbatch", 0) == 0  # re-attached, nothing submitted again
    assert len(c.read_text(args["log"]).splitlines()) == 2
    assert len(c.listdir(f"{remote_workdir}/.corral/arrays")) >= 1
    c.remove(args["log"])


def test_a_reply_lost_after_sbatch_does_not_submit_twice(
    slurm_cluster, ssh_host, rig, remote_workdir, tmp_path, mocker
):
    real_run = SSHConnector.run
    lost = []

    def run(self, argv, **kwargs):
        result = real_run(self, argv, **kwargs)
        if "corral.host.agent start" in " ".join(argv) and not lost:
            lost.append(argv)  # sbatch ran over there; the reply never arrives
            raise ConnectorError("connection dropped (injected)")
        return result

    mocker.patch.object(SSHConnector, "run", run)
    log = f"{remote_workdir}-log"
    launcher = SlurmLauncher(SSHConnector(ssh_host.alias, config_file=ssh_host.ssh_config),
                             workdir=remote_workdir, python=rig.python, time="5")
    with experiment(tmp_path / "ws", "lost-reply", launcher=launcher):
        for i in range(3):
            Record(name=f"r{i}", log=log).submit()
    assert lost, "the fault was not injected"
    c = SSHConnector(ssh_host.alias, config_file=ssh_host.ssh_config)
    assert sorted(json.loads(x)["name"] for x in c.read_text(log).splitlines()) == [
        "r0", "r1", "r2"
    ]
    arrays = c.listdir(f"{remote_workdir}/.corral/arrays")
    assert len([a for a in arrays if a.endswith(".sh")]) == 1  # one array, submitted once
    c.remove(log)


def test_a_submission_whose_agent_died_before_recording_it_is_found_by_name(
    slurm_cluster, tmp_path
):
    from corral.core.identity import identifier, type_id
    from corral.core.job import Job
    from corral.core.workspace import Workspace
    from corral.host import slurm as slurm_host

    log = tmp_path / "log"
    task = Record(name="once", sleep=1.0, log=log)
    launcher = SlurmLauncher(time="5")
    workspace = Workspace(tmp_path / "ws")
    tid, ident = type_id(task), identifier(task)
    job = Job(task, ident, tid, launcher.job_directory(workspace, tid, ident), launcher)
    job.resources = launcher.default_resources()
    (job.directory / ".corral").mkdir(parents=True)
    for name, text in launcher.job_files(job, workspace).items():
        (job.directory / name).write_text(text)
    write = lambda path, text, mode: path.write_text(text)  # noqa: E731
    token = uuid.uuid4().hex[:16]
    spec = {"path": str(tmp_path / "ws" / ".corral" / "arrays" / f"{token}.sh"),
            "token": token, "options": ["--time=5"], "comment": "corral:1:x",
            "output": str(tmp_path / "%A_%a.out")}
    slurm_host.sbatch_spawn(spec, write)([job.directory])  # ... and no launch.json written

    second = SlurmLauncher(time="5")
    with experiment(tmp_path / "ws", "died", launcher=second):
        Record(name="once", sleep=1.0, log=log).submit()
    assert second.counts["sbatch"] == 0  # found by its job name, re-attached
    assert [r["name"] for r in read_log(log)] == ["once"]


def test_slurmctld_restarted_mid_run_polling_recovers_and_nothing_is_resubmitted(
    slurm_cluster, tmp_path
):
    log = tmp_path / "log"
    launcher = SlurmLauncher(time="5")
    restarted = threading.Event()

    def restart_when_submitted() -> None:
        deadline = time.monotonic() + 60
        while launcher.counts["sbatch"] == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        subprocess.run(["bash", str(REPO / "tests/rig/rig.sh"), "restart", "slurmctld"],
                       check=True, capture_output=True)
        restarted.set()

    thread = threading.Thread(target=restart_when_submitted)
    thread.start()
    with experiment(tmp_path / "ws", "restart", launcher=launcher):
        for i in range(6):
            Record(name=f"r{i}", sleep=4.0, log=log).submit()
    thread.join()
    assert restarted.is_set()
    assert launcher.counts["sbatch"] == 1
    assert sorted(r["name"] for r in read_log(log)) == [f"r{i}" for i in range(6)]


@contextmanager
def controller_frozen(rig):
    """slurmctld stopped (SIGSTOP) for the block: it takes connections and answers nothing,
    as an overloaded controller does; every client command times out meanwhile."""
    pid = int((rig.dir / "run" / "slurmctld.pid").read_text())
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def test_a_controller_that_stops_answering_loses_nothing_and_submits_nothing_twice(
    slurm_cluster, rig, tmp_path, monkeypatch, caplog
):
    # This test's SLURM commands give up on the controller after ~4 s instead of ~20 s.
    conf = tmp_path / "slurm.conf"
    text = re.sub(r"(?m)^MessageTimeout=.*\n", "", slurm_cluster.conf.read_text())
    conf.write_text(text + "MessageTimeout=2\n")
    monkeypatch.setenv("SLURM_CONF", str(conf))
    caplog.set_level(logging.WARNING)
    log, ws = tmp_path / "log", tmp_path / "ws"
    first, second = SlurmLauncher(time="5"), SlurmLauncher(time="5")
    xps: dict[SlurmLauncher, object] = {}
    errors: list[BaseException] = []

    def client(launcher: SlurmLauncher) -> None:
        try:
            with experiment(ws, "hung", launcher=launcher) as xp:
                xps[launcher] = xp
                for i in range(3):
                    Record(name=f"h{i}", sleep=25.0, log=log).submit()
        except BaseException as exc:
            errors.append(exc)

    a = threading.Thread(target=client, args=(first,))
    a.start()
    deadline = time.monotonic() + 60
    while not (first in xps and len(jobs := xps[first].jobs) == 3
               and all(j.state is JobState.RUNNING for j in jobs.values())):
        assert time.monotonic() < deadline and not errors, errors or "the jobs never ran"
        time.sleep(0.2)
    # While the controller says nothing, the first client polls its running jobs (squeue
    # mode: squeue times out) and a second client recovers the same jobs (squeue, to know
    # whether they still run, times out twice): none may be taken for gone, none resubmitted.
    held = "squeue got no answer from SLURM"  # why the second client holds its jobs
    with controller_frozen(rig):
        b = threading.Thread(target=client, args=(second,))
        b.start()
        deadline = time.monotonic() + 25
        while held not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.2)
        # what `corral xp wait` and `corral jobs ls` read meanwhile: not lost either
        workspace = Workspace(ws)
        listed = refresh(workspace, read_experiment(workspace, "hung").latest.jobs, Plugins())
        # as last known (squeue mode) or as sacct (slurmdbd, not the controller) says
        assert all(j.state in ("submitted", "running") for j in listed), listed
    a.join(timeout=120)
    b.join(timeout=120)
    assert not a.is_alive() and not b.is_alive()
    assert errors == []
    assert first.counts["sbatch"] == 1
    assert second.counts["sbatch"] == 0  # re-attached once SLURM answered
    assert sorted(r["name"] for r in read_log(log)) == ["h0", "h1", "h2"]  # each ran once
    assert held in caplog.text
    if not slurm_cluster.sacct:
        assert "squeue got no answer (" in caplog.text  # the first client's polls


def test_a_job_the_controller_forgot_without_a_marker_is_lost(slurm_cluster, tmp_path):
    from corral.core.identity import identifier, type_id
    from corral.core.job import FailureReason, Job, JobState
    from corral.core.workspace import Workspace

    launcher = SlurmLauncher(time="5")
    task = Record(name="ghost", log=tmp_path / "log")
    tid, ident = type_id(task), identifier(task)
    job = Job(task, ident, tid, launcher.job_directory(Workspace(tmp_path), tid, ident), launcher)
    job.directory.mkdir(parents=True)
    job.handle = {"id": "99999999_0", "array": "99999999"}  # unknown to squeue and sacct
    state, failure = launcher.poll([job])[job]
    assert state is JobState.FAILED and failure.reason is FailureReason.LOST
    assert "gone from SLURM" in failure.message


# --- time limits: SLURM enforces them on a ~30 s tick, so these run a minute or more each.
# They start together when this module starts and overlap the module's other tests.

def _run_over_time_limit(workdir: Path) -> Reruns:
    return fail_then_rerun(workdir, SlurmLauncher(time="1"), "timeout")


def _run_resumable(workdir: Path) -> tuple[list[dict], int]:
    from tests.execution.resumable_tasks import UntilWarned

    log = workdir / "log"
    with experiment(workdir / "ws", "resume", launcher=SlurmLauncher(time="1")) as xp:
        UntilWarned(log=str(log)).submit()
    (job,) = xp.jobs.values()
    return [json.loads(line) for line in log.read_text().splitlines()], job.retries


@pytest.fixture(scope="session")  # not module: the slow tests run last, after other modules
def time_limit_runs(request, tmp_path_factory):
    here = Path(__file__)
    slow = [i for i in request.session.items if i.path == here and i.get_closest_marker("slow")]
    if not slow:
        yield {}
        return
    request.getfixturevalue("slurm_cluster")
    pool = ThreadPoolExecutor(max_workers=2)
    futures = {
        "timeout": pool.submit(_run_over_time_limit, tmp_path_factory.mktemp("timeout")),
        "resume": pool.submit(_run_resumable, tmp_path_factory.mktemp("resume")),
    }
    yield futures
    pool.shutdown(wait=True)


@pytest.fixture(scope="module", autouse=True)
def _start_time_limit_runs(time_limit_runs):
    """Start the slow scenarios as soon as the module starts."""


@pytest.mark.slow
def test_a_job_over_its_time_limit_ends_as_timeout_its_dependent_unrun_until_a_rerun(
    time_limit_runs,
):
    check(time_limit_runs["timeout"].result(timeout=300), "timeout", "timeout")


@pytest.mark.slow
def test_a_resumable_task_is_warned_checkpoints_and_completes_on_its_next_attempt(
    time_limit_runs,
):
    attempts, retries = time_limit_runs["resume"].result(timeout=400)
    assert retries == 1
    first, second = attempts
    assert first["attempt"] == 1 and first["warned"] is True  # SIGUSR1 from --signal
    assert 0 < first["left"] <= 60
    assert second == {"attempt": 2, "resumed": "saved"}


@pytest.fixture
def max_submit_jobs(slurm_cluster, time_limit_runs):
    """Lower root's MaxSubmitJobs for one test (an association limit, enforced by the rig),
    once the module's slow runs are over: their jobs, root's too, would count against it."""
    for future in time_limit_runs.values():
        future.exception(timeout=400)  # over, whatever its outcome (their tests check it)

    def limit(value: int) -> None:
        slurm_cluster.command("sacctmgr", "-i", "modify", "user", "root", "set",
                              f"MaxSubmitJobs={value}")
    limit(4)
    yield 4
    limit(-1)


@pytest.mark.sacct
def test_three_times_max_submit_jobs_all_complete(max_submit_jobs, tmp_path):
    log = tmp_path / "log"
    launcher = SlurmLauncher(time="5")
    n = 3 * max_submit_jobs
    with experiment(tmp_path / "ws", "limits", launcher=launcher):
        for i in range(n):
            Record(name=f"l{i}", sleep=0.5, log=log).submit()
    assert sorted(r["name"] for r in read_log(log)) == sorted(f"l{i}" for i in range(n))
    assert launcher.budget is not None and launcher.budget.limit == max_submit_jobs
    assert launcher.counts["sbatch"] >= 3
    # never more than the limit queued at once: SLURM refused no submission (a refusal
    # would have taught the launcher a limit)
    assert launcher.budget.learned is None


@pytest.mark.parametrize("over_ssh", [False, True], ids=["local", "ssh"])
def test_accounting_is_detected_as_the_cluster_has_it(
    slurm_cluster, ssh_host, rig, remote_workdir, over_ssh
):
    launcher = SlurmLauncher()
    if over_ssh:
        launcher = SlurmLauncher(SSHConnector(ssh_host.alias, config_file=ssh_host.ssh_config),
                                 workdir=remote_workdir, python=rig.python)
    assert launcher.accounting() is slurm_cluster.sacct  # polls with sacct, else squeue


def test_refused_for_a_limit_the_jobs_wait_and_go_out_later(slurm_cluster, tmp_path, mocker):
    """A limit the launcher could not read (e.g. a QOS's): sbatch's refusal is not a failure."""
    from corral.host import slurm as slurm_host

    real_run = slurm_host._run
    refusals = []

    def run(argv):
        if argv[0] == "sbatch" and len(refusals) < 2:
            refusals.append(argv)
            return subprocess.CompletedProcess(argv, 1, "", (
                "sbatch: error: QOSMaxSubmitJobPerUserLimit\nsbatch: error: Batch job submission "
                "failed: Job violates accounting/QOS policy (job submit limit, user's size and/or "
                "time limits)\n"))
        return real_run(argv)

    mocker.patch.object(slurm_host, "_run", run)
    mocker.patch("corral.launchers.slurm_limits.MIN_PAUSE", 0.5)
    log = tmp_path / "log"
    launcher = SlurmLauncher(time="5")
    with experiment(tmp_path / "ws", "refused", launcher=launcher):
        for i in range(3):
            Record(name=f"q{i}", log=log).submit()
    assert len(refusals) == 2
    assert sorted(r["name"] for r in read_log(log)) == ["q0", "q1", "q2"]


from corral import Meta, Param, Task  # noqa: E402


class FailingChild(Task):
    parent: Param[Fail]
    log: Meta[str]

    def execute(self) -> None:
        raise AssertionError("must not run")


class Hog(Task):
    megabytes: Param[int]

    def execute(self) -> None:
        block = bytearray(self.megabytes * 1024 * 1024)
        for i in range(0, len(block), 4096):
            block[i] = 1


def test_cancel_through_corral_and_an_external_scancel_end_as_cancelled(slurm_cluster, tmp_path):
    from corral.core.job import FailureReason, JobState
    from corral.core.workspace import Workspace
    from corral.testing.plugin import make_job, run_until_final, wait_until_running
    from corral.testing.tasks import Sleep
    from tests.execution.model_tasks import CleansUp

    launcher, workspace = SlurmLauncher(time="5"), Workspace(tmp_path)
    ours = make_job(Sleep(seconds=120, token="ours"), launcher, workspace)
    theirs = make_job(Sleep(seconds=120, token="theirs"), launcher, workspace)
    cleans = make_job(CleansUp(token="slurm", cleanup=1.0), launcher, workspace)
    launcher.start([ours, theirs, cleans], workspace)
    for job in (ours, theirs, cleans):
        wait_until_running(launcher, job)
    deadline = time.monotonic() + 60
    while not (cleans.directory / "started").exists():  # inside execute(), in its try
        assert time.monotonic() < deadline
        time.sleep(0.1)
    launcher.cancel([ours])
    slurm_cluster.command("scancel", theirs.handle["id"], cleans.handle["id"])  # by hand
    for job in (ours, theirs, cleans):
        state, failure = run_until_final(launcher, job, timeout=60)
        assert state is JobState.FAILED and failure.reason is FailureReason.CANCELLED
    # SLURM calls it cancelled at once; the task saw TaskCancelled, and its cleanup ran
    # within SLURM's KillWait, before the job's own marker was written
    marker = cleans.directory / ".corral" / "failed"
    while not marker.exists():
        assert time.monotonic() < deadline + 30
        time.sleep(0.1)
    assert (cleans.directory / "cleaned.txt").read_text() == "SIGTERM: cancelled by SIGTERM"
    assert json.loads(marker.read_text())["reason"] == "killed"


def test_fetch_copies_a_job_directory_back_from_the_cluster(
    slurm_cluster, ssh_host, rig, remote_workdir, tmp_path
):
    launcher = SlurmLauncher(SSHConnector(ssh_host.alias, config_file=ssh_host.ssh_config),
                             workdir=remote_workdir, python=rig.python, time="5")
    task = Record(name="fetched", log=f"{remote_workdir}-log")
    with experiment(tmp_path / "ws", "fetch", launcher=launcher) as xp:
        task.submit()
    (job,) = xp.jobs.values()
    copy = launcher.fetch(job, tmp_path / "copy")
    assert (copy / "out" / "result.txt").read_text() == "fetched"
    assert (copy / ".corral" / "done").exists() and (copy / "job.sh").exists()


@pytest.mark.parametrize("over_ssh", [False, True], ids=["local", "ssh"])
def test_jobs_log_follow_on_slurm_jobs_ends_with_the_job_marker_or_not(
    slurm_cluster, ssh_host, rig, remote_workdir, tmp_path, over_ssh
):
    from click.testing import CliRunner

    from corral.cli import cli
    from tests.execution.tasks import Talk

    def launcher(**options):
        if not over_ssh:
            return SlurmLauncher(time="5", **options)
        return SlurmLauncher(SSHConnector(ssh_host.alias, config_file=ssh_host.ssh_config),
                             workdir=remote_workdir, python=rig.python, time="5", **options)

    def follow(job) -> tuple[str, float]:
        started = time.monotonic()
        out = CliRunner().invoke(cli, ["jobs", "log", "-f", job.identifier[:10], "-w", str(ws)],
                                 catch_exceptions=False).output
        return out, time.monotonic() - started

    ws = tmp_path / "ws"
    with experiment(ws, "talk", launcher=launcher(), wait=False) as xp:
        Talk(lines=8).submit()
    (talk,) = xp.jobs.values()
    out, took = follow(talk)  # from before it starts until its done marker
    assert out == "".join(f"line {i}\n" for i in range(8))
    assert took >= 1.4  # it followed the job as it wrote
    # A job SLURM ends without letting it write a marker (cancelled while pending): the
    # follower learns it from SLURM.
    with experiment(ws, "held", launcher=launcher(extra={"--hold": None}), wait=False) as xp:
        Talk(lines=3).submit()
    (held,) = xp.jobs.values()
    slurm_cluster.command("scancel", held.handle["id"])
    out, took = follow(held)
    assert out == "" and took < 30


def test_ready_jobs_beyond_max_array_size_go_out_in_chunks(slurm_cluster, tmp_path, mocker):
    launcher = SlurmLauncher(time="5")
    # read from the controller: indices 0..MaxArraySize-1 (Slurm's default 1001)
    assert launcher.max_array_size() == 1000
    mocker.patch.object(launcher, "max_array_size", return_value=20)  # a stricter cluster
    log = tmp_path / "log"
    with experiment(tmp_path / "ws", "chunks", launcher=launcher) as xp:
        for i in range(45):
            Record(name=f"c{i}", log=log).submit()
    assert len(read_log(log)) == 45
    assert launcher.counts["sbatch"] == 3
    sizes = sorted(Counter(j.handle["array"] for j in xp.jobs.values()).values())
    assert sizes == [5, 20, 20]
