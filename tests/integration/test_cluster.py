"""A cluster shaped like a university's, for real: GPU generic resources of two types,
multi-node jobs whose ranks talk over TCP across the nodes' namespaces, preemption, a node
that dies. Against the rig's compute nodes (tests/rig/rig.sh): n1 (gpu:a100:2) and n2
(gpu:t4:2) in partition gpu, n3 and n4 in partition cpu, n3 also in low (a preempted job is
cancelled), lowrq (it is requeued) and high (which preempts them)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from corral import JobFailedError, experiment
from corral.core.job import FailureReason, JobState
from corral.launchers.slurm import SlurmLauncher
from tests.execution.tasks import read_log
from tests.integration.cluster_tasks import (
    AllReduce,
    Checkpointed,
    GpuInfo,
    Sleepy,
    TorchAllReduce,
)

pytestmark = pytest.mark.slurm


def wait_for(predicate, timeout: float = 60.0, what: str = "the condition"):
    deadline = time.monotonic() + timeout
    while True:
        found = predicate()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached after {timeout} s")
        time.sleep(0.2)


def test_gpu_jobs_get_the_gpus_of_the_type_they_ask(compute_nodes, slurm_cluster, tmp_path):
    log = tmp_path / "log"
    cluster = SlurmLauncher(partition="gpu", time="5")
    with experiment(tmp_path / "ws", "gpus", launcher=cluster) as xp:
        GpuInfo(name="a1", sleep=2.0, log=log).submit(gpus=1, gpu_type="a100")
        GpuInfo(name="a2", sleep=2.0, log=log).submit(gpus=1, gpu_type="a100")
        GpuInfo(name="t4", log=log).submit(gpus=2, gpu_type="t4")
        GpuInfo(name="any", log=log).submit(gpus=1)
    records = {r["name"]: r for r in read_log(log)}
    gpu_nodes = {t: n for n, (t, _) in compute_nodes.gpus.items()}
    assert records["a1"]["node"] == records["a2"]["node"] == gpu_nodes["a100"]
    assert records["t4"]["node"] == gpu_nodes["t4"]
    assert records["any"]["node"] in compute_nodes.gpus
    # SLURM gave each job its own devices and said so in CUDA_VISIBLE_DEVICES
    assert records["t4"]["cuda"] == "0,1" and records["t4"]["job_gpus"] == "0,1"
    a1, a2 = records["a1"], records["a2"]
    assert a1["cuda"] == a1["job_gpus"] and a2["cuda"] == a2["job_gpus"]
    assert a1["start"] < a2["end"] and a2["start"] < a1["end"]  # at once, on one node
    assert {a1["job_gpus"], a2["job_gpus"]} == {"0", "1"}  # so on different GPUs
    options = {j.task.name: cluster.job_options(j) for j in xp.jobs.values()}
    assert "--gres=gpu:a100:1" in options["a1"] and "--gres=gpu:t4:2" in options["t4"]
    assert "--gres=gpu:1" in options["any"]


def test_the_ranks_of_a_two_node_job_exchange_data_over_tcp(compute_nodes, tmp_path):
    cluster = SlurmLauncher(partition="cpu", time="5")
    task = AllReduce(seed=7)
    with experiment(tmp_path / "ws", "ranks", launcher=cluster):
        task.submit(nodes=2, tasks_per_node=2)
    results = [json.loads((task.__taskdir__ / f"result.rank{r}").read_text()) for r in range(4)]
    assert [r["total"] for r in results] == [sum(700 + r for r in range(4))] * 4
    assert [r["world"] for r in results] == [4] * 4
    nodes = sorted({r["node"] for r in results})
    assert len(nodes) == 2 and set(nodes) <= {"n3", "n4"}
    by_node = {n: sorted(r["local_rank"] for r in results if r["node"] == n) for n in nodes}
    assert by_node == {n: [0, 1] for n in nodes}
    assert sorted(r["node_rank"] for r in results) == [0, 0, 1, 1]
    first = next(r["node"] for r in results if r["rank"] == 0)
    assert results[0]["master"][0] == compute_nodes.addrs[first]  # rank 0's node's address
    other = next(n for n in nodes if n != first)
    # rank 0 heard from its own node's other rank and from both ranks on the other node
    assert sorted(results[0]["peers"]) == sorted(
        [compute_nodes.addrs[first], compute_nodes.addrs[other], compute_nodes.addrs[other]]
    )
    env = results[3]["environ"]
    assert env["WORLD_SIZE"] == "4" and env["RANK"] == "3" and env["LOCAL_WORLD_SIZE"] == "2"
    assert env["NODE_RANK"] == "1" and env["MASTER_PORT"] == str(results[0]["master"][1])
    # rank 0 prints to the job's stdout, the others to their own
    assert "rank 0 of 4" in (task.__taskdir__ / "stdout").read_text()
    assert "rank 3 of 4" in (task.__taskdir__ / "stdout.rank3").read_text()


def test_a_failing_rank_fails_the_job_with_its_reason_and_log(compute_nodes, tmp_path):
    cluster = SlurmLauncher(partition="cpu", time="5")
    task = AllReduce(seed=1, fail_rank=2)
    with pytest.raises(JobFailedError) as caught:
        with experiment(tmp_path / "ws", "bad-rank", launcher=cluster):
            task.submit(nodes=2, tasks_per_node=2)
    (failure,) = caught.value.failures
    assert failure.reason == "failed"
    assert failure.message.startswith("rank 2: RuntimeError: rank 2 gives up")
    assert "(its log: stderr.rank2)" in failure.message
    assert "rank 2 gives up" in (task.__taskdir__ / "stderr.rank2").read_text()


def preempt(slurm_cluster, when, cpus: int) -> str:
    """Once ``when()`` holds, submit a job to the high-priority partition taking ``cpus`` CPUs
    of n3: SLURM preempts what runs there in low and lowrq."""
    wait_for(when, what="the low-priority job running")
    return slurm_cluster.sbatch(
        "-p", "high", "-c", str(cpus), "--output", "/dev/null", "--wrap", "sleep 2"
    )


def test_a_preempted_resumable_task_checkpoints_and_finishes_from_its_checkpoint(
    compute_nodes, slurm_cluster, tmp_path
):
    log = tmp_path / "log"
    cluster = SlurmLauncher(partition="low", time="10")
    task = Checkpointed(steps=12, step_seconds=0.5, log=log)
    started = lambda: len(read_log(log)) >= 1 and (task.__taskdir__ / "checkpoint").exists()  # noqa: E731
    high: list[str] = []
    thread = threading.Thread(
        target=lambda: high.append(preempt(slurm_cluster, started, compute_nodes.cpus_each))
    )
    with experiment(tmp_path / "ws", "preempt", launcher=cluster) as xp:
        task.submit(cpus=compute_nodes.cpus_each)
        thread.start()
    thread.join()
    (job,) = xp.jobs.values()
    assert job.state is JobState.DONE
    assert [a.reason for a in job.attempts] == [FailureReason.PREEMPTED]
    events = read_log(log)
    starts = [e for e in events if e["event"] == "start"]
    assert len(starts) == 2 and starts[0]["step"] == 0
    saved = next(e for e in events if e["event"] == "checkpoint")["step"]
    assert 0 < saved < 12
    assert starts[1]["step"] == saved  # the second attempt resumed where the first saved
    assert events[-1] == {**events[-1], "event": "done", "step": 12}
    assert (task.__taskdir__ / "stdout.1").exists()  # the first attempt's log kept
    attempts = json.loads((task.__taskdir__ / ".corral" / "attempts.json").read_text())
    assert [a["reason"] for a in attempts] == ["preempted"]


def test_a_preempted_task_runs_again_from_scratch_until_its_budget_is_spent(
    compute_nodes, slurm_cluster, tmp_path
):
    log = tmp_path / "log"
    again = SlurmLauncher(partition="low", time="10", retries={"preempted": 1})
    task = Sleepy(name="again", sleep=6.0, log=log)
    running = lambda: [e for e in read_log(log) if e["event"] == "start"]  # noqa: E731
    thread = threading.Thread(
        target=lambda: preempt(slurm_cluster, running, compute_nodes.cpus_each)
    )
    with experiment(tmp_path / "ws", "again", launcher=again) as xp:
        task.submit(cpus=compute_nodes.cpus_each)
        thread.start()
    thread.join()
    (job,) = xp.jobs.values()
    assert job.state is JobState.DONE and [a.reason for a in job.attempts] == [
        FailureReason.PREEMPTED]
    assert [e["event"] for e in read_log(log)] == ["start", "start", "end"]  # from scratch

    spent = SlurmLauncher(partition="low", time="10", retries={"preempted": 0})
    log2 = tmp_path / "log2"
    task = Sleepy(name="spent", sleep=30.0, log=log2)
    running = lambda: [e for e in read_log(log2) if e["event"] == "start"]  # noqa: E731
    thread = threading.Thread(
        target=lambda: preempt(slurm_cluster, running, compute_nodes.cpus_each)
    )
    with pytest.raises(JobFailedError) as caught:
        with experiment(tmp_path / "ws", "spent", launcher=spent):
            task.submit(cpus=compute_nodes.cpus_each)
            thread.start()
    thread.join()
    (failure,) = caught.value.failures
    assert failure.reason == "preempted"


@pytest.mark.slow  # SLURM takes ~25 s to call a silent node dead
def test_a_job_whose_node_dies_is_retried_once_on_another_node(
    compute_nodes, slurm_cluster, tmp_path
):
    log = tmp_path / "log"
    cluster = SlurmLauncher(partition="cpu", time="10")
    task = Sleepy(name="survivor", sleep=8.0, log=log)
    killed: list[str] = []

    def kill_its_node() -> None:
        first = wait_for(lambda: [e for e in read_log(log) if e["event"] == "start"],
                         what="the job running")[0]
        killed.append(first["node"])
        compute_nodes.down(first["node"])

    thread = threading.Thread(target=kill_its_node)
    try:
        with experiment(tmp_path / "ws", "node-fail", launcher=cluster) as xp:
            task.submit()
            thread.start()
        thread.join()
    finally:
        thread.join()
        for node in killed:
            compute_nodes.up(node)
    (job,) = xp.jobs.values()
    assert job.state is JobState.DONE
    assert [a.reason for a in job.attempts] == [FailureReason.NODE_FAIL]
    starts = [e["node"] for e in read_log(log) if e["event"] == "start"]
    assert len(starts) == 2 and starts[0] == killed[0] and starts[1] != killed[0]
    # the retry ran in the same directory and kept the first attempt's log
    assert f"survivor starts on {killed[0]}" in (task.__taskdir__ / "stdout.1").read_text()
    assert f"survivor starts on {starts[1]}" in (task.__taskdir__ / "stdout").read_text()


def test_capacities_of_each_partition_come_from_one_sinfo(compute_nodes, slurm_cluster):
    cluster = SlurmLauncher(partition="gpu")
    offer = cluster.capacities()
    assert offer["gpu_type"] == frozenset(t for t, _ in compute_nodes.gpus.values())
    assert offer["gpus"] == max(n for _, n in compute_nodes.gpus.values())
    assert offer["cpus"] == compute_nodes.cpus_each and offer["nodes"] == 2
    assert cluster.counts["sinfo"] == 1
    assert SlurmLauncher(partition="cpu").capacities().get("gpus") == 0
    partitions = cluster.partitions()
    assert cluster.counts["sinfo"] == 1  # read once
    assert partitions["gpu"].gpus == dict(compute_nodes.gpus.values())
    assert partitions["debug"].default


def test_a_sweep_goes_to_the_partition_or_box_that_fits_each_job(
    compute_nodes, slurm_cluster, ssh_host, rig, tmp_path, monkeypatch
):
    """GPU jobs to the gpu partition (or to the SSH box for the model only it has), CPU jobs
    to the cpu partition: chosen per job, from what each asks."""
    import corral
    from corral.app.plugins import Plugins

    config_home = tmp_path / "config"
    (config_home / "corral").mkdir(parents=True)
    workdir = f"/home/{ssh_host.user}/fit-{tmp_path.name}"
    (config_home / "corral" / "hosts.toml").write_text(f"""
[hosts.cluster-cpu]
launcher = "slurm"
partition = "cpu"
time = "5"

[hosts.cluster-gpu]
launcher = "slurm"
partition = "gpu"
time = "5"

[hosts.gpubox]
launcher = "ssh"
workdir = "{workdir}"
python = "{rig.python}"
gpu_slots = 2
gpu_type = "l4"
ssh = {{ host = "{ssh_host.alias}", config_file = "{ssh_host.ssh_config}" }}
""")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config_home))
    monkeypatch.chdir(tmp_path)
    log = tmp_path / "log"
    launcher = corral.fitting(plugins=Plugins(entry_points=False))
    with experiment(tmp_path / "ws", "fit", launcher=launcher) as xp:
        GpuInfo(name="cpu", log=log).submit(cpus=2)
        GpuInfo(name="a100", log=log).submit(gpus=1, gpu_type="a100")
        GpuInfo(name="t4", log=log).submit(gpus=1, gpu_type="t4")
        box = GpuInfo(name="l4", log="/dev/null")
        box.submit(gpus=1, gpu_type="l4")
    placed = {j.task.name: launcher.names[launcher.members.index(j.launcher)]
              for j in xp.jobs.values()}
    assert placed == {"cpu": "cluster-cpu", "a100": "cluster-gpu", "t4": "cluster-gpu",
                      "l4": "gpubox"}
    nodes = {r["name"]: r["node"] for r in read_log(log)}
    gpu_nodes = {t: n for n, (t, _) in compute_nodes.gpus.items()}
    assert nodes["a100"] == gpu_nodes["a100"] and nodes["t4"] == gpu_nodes["t4"]
    assert nodes["cpu"] in ("n3", "n4")
    assert all(j.state is JobState.DONE for j in xp.jobs.values())
    with pytest.raises(corral.ConfigError, match=r"no launcher fits GpuInfo/\w+: cluster-cpu: "
                       r"gpus 0 < the 1 the job asks.*gpu_type 'h100' not offered \(a100, t4\)"):
        with experiment(tmp_path / "ws", "nofit", launcher=launcher):
            GpuInfo(name="h100", log=log).submit(gpus=1, gpu_type="h100")
    Path(workdir)  # the box's workdir is removed with the rig's test user's files


@pytest.mark.slow
def test_torchrun_mode_starts_one_torchrun_per_node_and_torch_distributed_works(
    compute_nodes, torch_python, tmp_path
):
    cluster = SlurmLauncher(partition="cpu", time="5", python=str(torch_python))
    task = TorchAllReduce(seed=3)
    with experiment(tmp_path / "ws", "torchrun", launcher=cluster) as xp:
        task.submit(nodes=2, tasks_per_node=2, torchrun=True)
    (job,) = xp.jobs.values()
    assert "--ntasks-per-node=1" in cluster.job_options(job)  # one torchrun per node
    results = [json.loads((task.__taskdir__ / f"torch.rank{r}").read_text()) for r in range(4)]
    assert [r["total"] for r in results] == [float(sum(300 + r for r in range(4)))] * 4
    assert all(r["torchrun"] and r["world"] == 4 for r in results)
    assert [r["corral_rank"] for r in results] == [0, 1, 2, 3]
    assert sorted(r["node_rank"] for r in results) == [0, 0, 1, 1]
    assert len({r["node"] for r in results}) == 2
