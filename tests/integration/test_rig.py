"""Smoke tests proving the test rig is real: SLURM daemons, sshd, host keys, the second host.

They drive Slurm's commands and paramiko directly, independent of corral's own code.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import paramiko
import pytest

from tests.rig.fixtures import Rig, SlurmCluster, SSHHost, parse_job_id

# A `--time=1` job ends TIMEOUT 63-85 s after it starts (limits are checked on a ~30 s tick).
TIMEOUT_WAIT = 150


@pytest.fixture(scope="session")
def slow_jobs(
    slurm_cluster: SlurmCluster, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    """Jobs that take a while to reach their end state, submitted together and early."""
    out = tmp_path_factory.mktemp("slow-jobs")
    return {
        "timeout": slurm_cluster.sbatch(
            "--time=1", "--partition=short", f"--output={out}/%j.out", "--wrap", "sleep 600"
        ),
    }


@pytest.fixture(scope="module", autouse=True)
def _submit_slow_jobs_first(request: pytest.FixtureRequest) -> None:
    # Submitting before the quick tests run lets their time overlap with the slow jobs' wait.
    if any(item.get_closest_marker("slow") for item in request.session.items):
        request.getfixturevalue("slow_jobs")


def connect(host: SSHHost, known_hosts: Path) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    client.load_host_keys(str(known_hosts))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(
        host.host, port=host.port, username=host.user, key_filename=str(host.key),
        look_for_keys=False, allow_agent=False, timeout=10,
    )
    return client


def exec_text(client: paramiko.SSHClient, command: str) -> str:
    _, stdout, stderr = client.exec_command(command, timeout=30)
    status = stdout.channel.recv_exit_status()
    out = stdout.read().decode()
    assert status == 0, f"{command!r} exited {status}: {stderr.read().decode()}"
    return out


def squeue_field(slurm: SlurmCluster, job_id: str, fmt: str) -> str:
    return slurm.command("squeue", "-h", "-t", "all", "-j", job_id, "-o", fmt).stdout.strip()


# ---------------------------------------------------------------------------------------------
# SLURM


def test_partitions(slurm_cluster: SlurmCluster) -> None:
    out = slurm_cluster.command("sinfo", "-h", "-o", "%P|%l|%a|%N").stdout.split()
    limits = {line.split("|")[0]: (line.split("|")[1], line.split("|")[3]) for line in out}
    node = slurm_cluster.node
    assert limits == {  # short: MaxTime=00:05:00
        "debug*": ("infinite", node), "short": ("5:00", node), "gpu": ("infinite", "n[1-2]"),
        "cpu": ("infinite", "n[3-4]"), "low": ("infinite", "n3"), "lowrq": ("infinite", "n3"),
        "high": ("infinite", "n3"),
    }


def test_each_compute_node_is_a_slurmd_in_its_own_namespace(compute_nodes, rig) -> None:
    import os

    here = os.readlink("/proc/self/ns/net")
    seen = set()
    for node in compute_nodes.names:
        pid = int((rig.dir / "run" / f"slurmd-{node}.pid").read_text())
        assert Path(f"/proc/{pid}/exe").resolve() == Path("/usr/sbin/slurmd").resolve()
        netns = os.readlink(f"/proc/{pid}/ns/net")
        assert netns != here and netns not in seen
        seen.add(netns)
        show = rig.slurm.command("scontrol", "show", "node", node, "-o").stdout
        assert f"NodeAddr={compute_nodes.addrs[node]} " in show
        if node in compute_nodes.gpus:
            kind, count = compute_nodes.gpus[node]
            assert f"Gres=gpu:{kind}:{count}" in show
        # %n keeps each node's spool and log apart
        assert (Path(rig.facts["CORRAL_RIG_PUBLIC_DIR"]) / "slurmd-spool" / node).is_dir()
        assert (rig.dir / "log" / f"slurmd.{node}.log").is_file()
    config = rig.slurm.command("scontrol", "show", "config").stdout
    assert "preempt/partition_prio" in config and "GresTypes               = gpu" in config


def test_sbatch_job_completes(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    script = tmp_path / "job.sh"
    script.write_text("#!/bin/bash\necho \"hello from $SLURM_JOB_ID\"\n")
    job = slurm_cluster.sbatch(f"--output={tmp_path}/out.txt", str(script))
    assert slurm_cluster.wait(job) == {job: "COMPLETED"}
    assert (tmp_path / "out.txt").read_text() == f"hello from {job}\n"


def test_exit_code_gives_failed(slurm_cluster: SlurmCluster) -> None:
    job = slurm_cluster.sbatch("--output=/dev/null", "--wrap", "exit 3")
    assert slurm_cluster.wait(job) == {job: "FAILED"}
    assert squeue_field(slurm_cluster, job, "%T") == "FAILED"
    show = slurm_cluster.command("scontrol", "show", "job", "-o", job).stdout
    assert " ExitCode=3:0 " in show


def test_scancel_gives_cancelled(slurm_cluster: SlurmCluster) -> None:
    job = slurm_cluster.sbatch("--output=/dev/null", "--wrap", "sleep 600")
    slurm_cluster.wait(job, until={"RUNNING"})
    slurm_cluster.command("scancel", job)
    assert slurm_cluster.wait(job) == {job: "CANCELLED"}


def test_job_array_runs_every_task(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    job = slurm_cluster.sbatch(
        "--array=0-4", f"--output={tmp_path}/%a.out", "--wrap", "echo $SLURM_ARRAY_TASK_ID"
    )
    states = slurm_cluster.wait(job, count=5)
    assert states == {f"{job}_{i}": "COMPLETED" for i in range(5)}
    assert sorted(p.read_text() for p in tmp_path.glob("*.out")) == [f"{i}\n" for i in range(5)]


@pytest.mark.sacct
def test_sacct_shows_test_users_job(ssh_host: SSHHost, slurm_cluster: SlurmCluster) -> None:
    job = parse_job_id(ssh_host.run("sbatch", "--parsable", "--output=/dev/null",
                                    "--wrap", "true").stdout)
    slurm_cluster.wait(job)
    # slurmdbd records the end a moment after slurmctld: poll, as the test user.
    deadline, row = time.monotonic() + 30, ""
    while time.monotonic() < deadline:
        row = ssh_host.run("sacct", "-j", job, "-X", "-n", "-P", "-o", "JobID,User,State").stdout
        if row.strip() == f"{job}|{ssh_host.user}|COMPLETED":
            return
        time.sleep(0.5)
    pytest.fail(f"sacct never showed job {job} completed for {ssh_host.user}: {row!r}")


@pytest.mark.no_sacct
def test_without_accounting_only_squeue_knows(slurm_cluster: SlurmCluster) -> None:
    job = slurm_cluster.sbatch("--output=/dev/null", "--wrap", "true")
    assert slurm_cluster.wait(job) == {job: "COMPLETED"}
    sacct = slurm_cluster.command("sacct", "-j", job, "-n", "-P", check=False)
    assert "accounting storage is disabled" in (sacct.stdout + sacct.stderr)


@pytest.mark.cgroup
def test_memory_limit_gives_out_of_memory(slurm_cluster: SlurmCluster) -> None:
    hog = "/usr/bin/python3 -c 'b = b\"x\" * (400 * 2**20); import time; time.sleep(5)'"
    job = slurm_cluster.sbatch("--mem=64M", "--output=/dev/null", "--wrap", hog)
    assert slurm_cluster.wait(job) == {job: "OUT_OF_MEMORY"}


# ---------------------------------------------------------------------------------------------
# SSH


def test_paramiko_checks_the_host_key(ssh_host: SSHHost) -> None:
    with connect(ssh_host, ssh_host.known_hosts) as client:
        assert exec_text(client, "id -un").strip() == ssh_host.user


def test_unknown_host_key_is_refused(ssh_host: SSHHost, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.touch()
    with pytest.raises(paramiko.SSHException, match="not found in known_hosts"):
        connect(ssh_host, empty).close()


def test_openssh_alias_and_remote_python(rig: Rig, ssh_host: SSHHost) -> None:
    code = "import corral, click, filelock, paramiko, pluggy; print(corral.__name__)"
    assert ssh_host.run(rig.python, "-c", code).stdout == "corral\n"


def test_sbatch_as_test_user_over_ssh(ssh_host: SSHHost, slurm_cluster: SlurmCluster) -> None:
    out = ssh_host.run("sbatch", "--parsable", "--output=/dev/null", "--wrap", "id -un").stdout
    job = parse_job_id(out)
    assert slurm_cluster.wait(job) == {job: "COMPLETED"}
    assert squeue_field(slurm_cluster, job, "%u") == ssh_host.user


def test_second_host_in_namespace(ssh_host2: SSHHost, slurm_cluster: SlurmCluster) -> None:
    with connect(ssh_host2, ssh_host2.known_hosts) as client:
        transport = client.get_transport()
        assert transport is not None
        assert transport.getpeername()[0] == ssh_host2.host
        # sbatch from inside the namespace reaches slurmctld over the veth pair.
        job = parse_job_id(exec_text(client, "sbatch --parsable --output=/dev/null --wrap true"))
    assert slurm_cluster.wait(job) == {job: "COMPLETED"}


def test_openssh_refuses_a_changed_host_key(ssh_host: SSHHost, tmp_path: Path) -> None:
    wrong = tmp_path / "known_hosts"
    key = paramiko.Ed25519Key.from_private_key_file(str(ssh_host.key))  # not the host's key
    wrong.write_text(f"[{ssh_host.host}]:{ssh_host.port} {key.get_name()} {key.get_base64()}\n")
    argv = ["ssh", "-F", str(ssh_host.ssh_config), "-o", f"UserKnownHostsFile={wrong}"]
    result = subprocess.run(
        [*argv, ssh_host.alias, "true"],
        capture_output=True, text=True, timeout=30, check=False,
    )
    assert result.returncode == 255
    assert "HOST IDENTIFICATION HAS CHANGED" in result.stderr


# ---------------------------------------------------------------------------------------------
# Slow: last, so the quick tests above run while these jobs approach their end state.


@pytest.mark.slow
def test_time_limit_gives_timeout(slurm_cluster: SlurmCluster, slow_jobs: dict[str, str]) -> None:
    job = slow_jobs["timeout"]
    assert slurm_cluster.wait(job, timeout=TIMEOUT_WAIT) == {job: "TIMEOUT"}


def test_a_second_up_is_a_no_op(rig: Rig) -> None:
    pids = {p.name: p.read_text() for p in (rig.dir / "run").glob("*.pid")}
    start = time.monotonic()
    out = subprocess.run(
        ["bash", str(Path(__file__).resolve().parents[2] / "tests/rig/rig.sh"), "up"],
        capture_output=True, text=True, check=True, timeout=60,
    )
    assert "already up" in out.stderr
    assert time.monotonic() - start < 5
    assert {p.name: p.read_text() for p in (rig.dir / "run").glob("*.pid")} == pids
