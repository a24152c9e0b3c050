"""Hostile values — params, tags, environment — reach jobs exactly and run nothing, on every
launcher: over SSH and through SLURM (locally and over SSH) as well as locally."""

from __future__ import annotations

import json
import uuid

import pytest

from corral import experiment, tag
from corral.connectors.ssh import SSHConnector, close_all
from corral.launchers.local import LocalLauncher
from corral.launchers.slurm import SlurmLauncher
from corral.launchers.ssh import SSHLauncher
from tests.execution.hostile_tasks import NASTY, Mirror

pytestmark = pytest.mark.reliability


@pytest.fixture(autouse=True)
def fresh_pool():
    yield
    close_all()


@pytest.mark.parametrize("kind", ["local", "ssh", "slurm", "slurm-ssh"])
def test_hostile_values_reach_the_job_exactly(kind, tmp_path, request):
    connector = None
    if kind in ("ssh", "slurm-ssh"):
        rig, host = request.getfixturevalue("rig"), request.getfixturevalue("ssh_host")
        connector = SSHConnector(host.alias, config_file=host.ssh_config)
        workdir = f"/home/corraltest/hostile-{uuid.uuid4().hex[:8]}"
        request.addfinalizer(lambda: connector.run(["rm", "-rf", "--", workdir]))
    if kind.startswith("slurm"):
        request.getfixturevalue("slurm_cluster")
    launchers = {
        "local": lambda: LocalLauncher(cpu_slots=1),
        "ssh": lambda: SSHLauncher(connector, workdir=workdir, python=rig.python),
        "slurm": lambda: SlurmLauncher(time="5"),
        "slurm-ssh": lambda: SlurmLauncher(connector, workdir=workdir, python=rig.python,
                                           time="5"),
    }
    task = Mirror(text=NASTY, other=tag(NASTY + "!"), note=NASTY)
    with experiment(tmp_path / "ws", "hostile", launcher=launchers[kind]()):
        task.submit()
    path = task.__taskdir__ / "mirror.json"
    seen = json.loads(connector.read_text(path) if connector else path.read_text())
    assert seen == {"text": NASTY, "other": NASTY + "!", "note": NASTY,
                    "tags": {"other": NASTY + "!"}, "env": NASTY, "pwned": False}
