"""Dry runs build every job as a real run would, print it, and touch nothing."""

from __future__ import annotations

from pathlib import PurePosixPath

import pytest

from corral import experiment
from corral.connectors.ssh import SSHConnector
from corral.core.dryrun import SCRIPT_END, SCRIPT_START
from corral.launchers.local import LocalLauncher
from corral.launchers.slurm import SlurmLauncher
from corral.launchers.ssh import SSHLauncher
from tests.execution.tasks import After, GpuRecord, Record


def scripts(out: str) -> list[str]:
    """The job scripts printed by a dry run, in order."""
    found = []
    for block in out.split(SCRIPT_START + "\n")[1:]:
        found.append(block.split(SCRIPT_END)[0])
    return found


def test_remote_launchers_are_planned_without_connecting(tmp_path, capsys):
    ssh = SSHLauncher(host="bob@nohost.invalid:2200", workdir="/scratch/ws",
                      python="/opt/py/bin/python3", setup=["source /opt/venv/bin/activate"],
                      cpu_slots=4, gpu_slots=2)
    slurm = SlurmLauncher(SSHConnector("alice@cluster.invalid"), workdir="/scratch/alice",
                          partition="gpu", time="1:00:00")
    with experiment(tmp_path / "ws", "dry", launcher=ssh, dry_run=True) as xp:
        first = GpuRecord(name="x", log="/tmp/l")
        first.submit()
        After(before=first, log="/tmp/l").submit()
        Record(name="s", log="/tmp/l").submit(launcher=slurm)
    assert ssh.ssh.operations == 0 and slurm.connector.operations == 0  # never connected
    assert not (tmp_path / "ws").exists()
    out = capsys.readouterr().out
    gpu, after, on_slurm = xp.planned
    assert gpu.directory.startswith("/scratch/ws/jobs/tests.execution.tasks.GpuRecord/")
    assert gpu.command == ["ssh", "bob@nohost.invalid:2200", "bash", "-c",
                           "source /opt/venv/bin/activate\n"
                           "cd / && exec /opt/py/bin/python3 -m corral.host.agent start"]
    assert [str(c) for c in gpu.changes] == [
        "gpus: 0 -> 1  [submit hook one_gpu]",
        "+ CORRAL_CPU_SLOTS=cpu:4:1  [launcher ssh]",
        "+ CORRAL_GPU_SLOTS=gpu:2:1  [launcher ssh]",
    ]
    assert after.dependencies == [gpu.name] and f"after:      {gpu.name}" in out
    assert on_slurm.command == ["ssh", "alice@cluster.invalid:22", "sbatch", "--parsable",
                                "/scratch/alice/.corral/arrays/<batch>.sh"]
    assert "#SBATCH --partition=gpu" in on_slurm.script
    assert scripts(out) == [p.script for p in xp.planned]
    assert out.rstrip().endswith("dry run of 'dry': 3 job(s); nothing was written or started")


def test_dry_run_from_the_environment(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CORRAL_DRY_RUN", "1")
    launcher = LocalLauncher(cpu_slots=2, slots_dir=tmp_path / "slots")
    with experiment(tmp_path / "ws", "env", launcher=launcher) as xp:
        Record(name="r", log=str(tmp_path / "log")).submit()
    (job,) = xp.planned
    assert job.command == ["bash", f"{job.directory}/job.sh"]
    assert not (tmp_path / "ws").exists() and not (tmp_path / "log").exists()
    assert scripts(capsys.readouterr().out) == [job.script]


@pytest.mark.parametrize(("workdir", "known"), [("/abs/w", "/abs/w"), ("~/w", None)])
def test_known_root_needs_no_connection_unless_home_is_needed(workdir, known):
    launcher = SSHLauncher(host="nohost.invalid", workdir=workdir)
    assert launcher.host.known_root() == (None if known is None else PurePosixPath(known))
