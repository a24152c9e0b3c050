"""Code snapshots on remote launchers, against the rig: shipped once per tree and host inside
the agent's ``start`` command, and a SLURM job held pending while the project is edited runs
the code it was submitted with.

The task module lives in a temporary project under /tmp that the remote user can read, so
that a job importing the live code (no snapshot) would see the edit.
"""

from __future__ import annotations

import importlib
import json
import shutil
import sys
import tempfile
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from corral import experiment
from corral.cli import cli
from corral.connectors.ssh import SSHConnector, close_all
from corral.core.workspace import Workspace
from corral.launchers.slurm import SlurmLauncher
from corral.launchers.ssh import SSHLauncher
from corral.ops.inventory import list_jobs

REMOTE_HOME = "/home/corraltest"

TASKS = '''
import json
from corral import Param, Task

VERSION = "old"


class Report(Task):
    name: Param[str]

    def execute(self):
        print(json.dumps({"version": VERSION, "file": __file__}), flush=True)


class After(Task):
    before: Param[Report]

    def execute(self):
        print(json.dumps({"version": VERSION, "file": __file__}), flush=True)
'''


class RigProject:
    """A project under /tmp (mode 755), importable here as ``<package>.tasks``."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="corral-snap-", dir="/tmp"))
        self.root.chmod(0o755)
        self.package = f"snaprig_{uuid.uuid4().hex[:10]}"
        self.tasks_file = self.root / self.package / "tasks.py"
        self.tasks_file.parent.mkdir(mode=0o755)
        (self.tasks_file.parent / "__init__.py").write_text("")
        self.tasks_file.write_text(TASKS)

    def module(self):
        return importlib.import_module(f"{self.package}.tasks")

    def edit(self) -> None:
        self.tasks_file.write_text(TASKS.replace('VERSION = "old"', 'VERSION = "new"'))

    def snapshot_file(self, workdir: str, digest: str) -> str:
        return f"{workdir}/code/{digest}/{self.root.name}/{self.package}/tasks.py"


@pytest.fixture
def project():
    proj = RigProject()
    sys.path.insert(0, str(proj.root))
    yield proj
    sys.path.remove(str(proj.root))
    for name in [m for m in sys.modules if m.startswith(proj.package)]:
        del sys.modules[name]
    shutil.rmtree(proj.root, ignore_errors=True)
    close_all()


@pytest.fixture
def workdir(ssh_host) -> str:
    path = f"{REMOTE_HOME}/snap-{uuid.uuid4().hex[:10]}"
    yield path
    SSHConnector(ssh_host.alias, config_file=ssh_host.ssh_config).run(["rm", "-rf", "--", path])


def connector(host) -> SSHConnector:
    return SSHConnector(host.alias, config_file=host.ssh_config)


def ssh_launcher(host, rig, workdir) -> SSHLauncher:
    return SSHLauncher(connector(host), workdir=workdir, python=rig.python, cpu_slots=2)


def output(c: SSHConnector, job) -> dict:
    return json.loads(c.read_text(f"{job.directory}/stdout"))


def test_ssh_sends_a_snapshot_once_per_tree_and_launcher_inside_start(
    ssh_host, rig, workdir, tmp_path, project
):
    tasks = project.module()
    ws = tmp_path / "ws"
    launcher = ssh_launcher(ssh_host, rig, workdir)
    with experiment(ws, "upload", launcher=launcher) as xp:
        first = tasks.Report(name="a")
        first.submit()
        tasks.After(before=first).submit()  # started by a second `start`, after the first
    host = launcher.host
    (digest,) = host.uploads
    assert host.uploads == {digest: 1}
    assert host.calls["start"] == 2
    assert set(host.calls) <= {"version", "recover", "start", "poll"}  # no command of its own
    c = connector(ssh_host)
    for job in xp.jobs.values():
        assert output(c, job) == {"version": "old", "file": project.snapshot_file(workdir, digest)}
        provenance = json.loads(c.read_text(f"{job.directory}/.corral/provenance.json"))
        assert provenance["snapshot"] == digest and provenance["launcher"] == "ssh"

    with experiment(ws, "again", launcher=launcher):  # same launcher, same tree: not sent
        tasks.Report(name="b").submit()
    assert host.uploads == {digest: 1} and host.calls["start"] == 3

    other = ssh_launcher(ssh_host, rig, workdir)  # a new launcher sends it once; it is there
    with experiment(ws, "other", launcher=other):
        tasks.Report(name="c").submit()
    assert other.host.uploads == {digest: 1}
    assert c.run(["ls", f"{workdir}/code"]).stdout.split() == [digest]

    project.edit()  # another tree: sent once more, beside the first
    with experiment(ws, "edited", launcher=launcher) as xp2:
        tasks.Report(name="d").submit()
    (edited,) = xp2.jobs.values()
    assert len(host.uploads) == 2 and set(host.uploads.values()) == {1}
    assert output(c, edited)["version"] == "new"

    # the local pointer keeps the provenance; `jobs rm` removes the job on its host too
    after = next(j for j in xp.jobs.values() if type(j.task).__name__ == "After")
    shown = CliRunner().invoke(cli, ["jobs", "show", after.identifier[:10], "-w", str(ws)])
    assert f"snapshot   code/{digest}" in shown.output and "launcher   ssh at ssh:" in shown.output
    removed = CliRunner().invoke(cli, ["jobs", "rm", after.identifier[:10], "-w", str(ws)])
    assert removed.exit_code == 0, removed.output
    assert "removed (and" in removed.output and not c.exists(str(after.directory))
    assert after.identifier not in {j.identifier for j in list_jobs(Workspace(ws))}


def test_a_held_slurm_job_runs_the_code_it_was_submitted_with(
    slurm_cluster, ssh_host, rig, workdir, tmp_path, project
):
    tasks = project.module()
    launcher = SlurmLauncher(connector(ssh_host), workdir=workdir, python=rig.python, time="5",
                             extra={"--hold": None})
    with experiment(tmp_path / "ws", "held", launcher=launcher, wait=False) as xp:
        tasks.Report(name="held").submit()
    (job,) = xp.jobs.values()
    slurm_id = str(job.handle["id"]).split("_", 1)[0]
    try:
        assert set(slurm_cluster.states(slurm_id).values()) == {"PENDING"}
        project.edit()
        assert 'VERSION = "new"' in project.tasks_file.read_text()
        slurm_cluster.command("scontrol", "release", slurm_id)
        states = slurm_cluster.wait(slurm_id, timeout=120)
    finally:
        slurm_cluster.command("scancel", slurm_id, check=False)
    assert set(states.values()) == {"COMPLETED"}
    (digest,) = launcher.host.uploads
    assert output(connector(ssh_host), job) == {
        "version": "old", "file": project.snapshot_file(workdir, digest)
    }
