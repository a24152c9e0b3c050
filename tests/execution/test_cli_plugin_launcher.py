"""``corral jobs`` and ``corral xp`` on the jobs of a plugin launcher with a handle of its own.

The ``ticket`` launcher below is installed as a distribution with a ``corral`` entry point.
Its handle is a ticket file, not a pid, so nothing but its own ``poll`` and ``cancel`` can
tell whether its jobs run or stop them: the command line gets them by rebuilding the
launcher from the workspace's records (``for_recorded``) and calling those methods.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from click.testing import CliRunner

import corral.cli.jobs
import corral.cli.xp  # noqa: F401  (the commands register themselves)
from corral.cli import cli
from corral.core.workspace import Workspace, read_json
from corral.ops.inventory import list_jobs

REPO = Path(__file__).resolve().parents[2]

PLUGIN = '''
import os
import signal
import subprocess
from pathlib import Path

from corral import hookimpl
from corral.connectors import LocalConnector
from corral.core.job import Failure, FailureReason, JobState
from corral.launchers import HostLauncher


class TicketLauncher(HostLauncher):
    """Jobs on this machine, each known by a ticket file holding its pid."""

    name = "ticket"

    def __init__(self, *, connector=None, python=None):
        super().__init__(connector or LocalConnector(), python=python)

    def launch(self, jobs, *, detached=False):
        handles = []
        for job in jobs:
            proc = subprocess.Popen(
                ["bash", str(job.directory / "job.sh")], cwd=job.directory,
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, start_new_session=True,
            )
            ticket = job.directory / ".corral" / "ticket"
            ticket.write_text(str(proc.pid))
            handles.append({"ticket": str(ticket)})
        return handles

    @staticmethod
    def _pid(handle):
        return int(Path(handle["ticket"]).read_text())

    def alive(self, handles):
        found = []
        for handle in handles:
            try:
                stat = Path(f"/proc/{self._pid(handle)}/stat").read_text()
            except (OSError, KeyError, TypeError, ValueError):
                found.append(False)
                continue
            found.append(stat[stat.rindex(")") + 2] not in "ZX")
        return found

    def poll(self, jobs):
        markers = self.markers(jobs)
        result = {}
        for job, alive in zip(jobs, self.alive([j.handle for j in jobs])):
            if markers[job] is not None:
                result[job] = markers[job]
            elif alive:
                result[job] = (JobState.RUNNING, None)
            else:
                result[job] = (JobState.FAILED, Failure(FailureReason.LOST, "ticket gone"))
        return result

    def cancel(self, jobs):
        for job, alive in zip(jobs, self.alive([j.handle for j in jobs])):
            if alive:
                os.killpg(self._pid(job.handle), signal.SIGTERM)

    def cancel_outcome(self, job):
        return f"ticket {self._pid(job.handle)} withdrawn"


@hookimpl
def corral_register_launchers(registry):
    registry.add(TicketLauncher)
'''

EXPERIMENT = '''
import sys

from corral import experiment
from corral.testing.tasks import Sleep

if __name__ == "__main__":
    with experiment(sys.argv[1], "tickets", launcher="ticket", wait=False):
        Sleep(seconds=120, token="ticket").submit()
'''


def install_plugin(root: Path) -> None:
    """A distribution ``corral-ticket`` with the entry point ``ticket``, on ``root``."""
    dist = root / "corral_ticket-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: corral-ticket\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[corral]\nticket = corral_ticket\n")
    (root / "corral_ticket.py").write_text(PLUGIN)


def test_jobs_kill_and_xp_wait_go_through_the_plugin_launcher(tmp_path, monkeypatch):
    site = tmp_path / "site"
    install_plugin(site)
    monkeypatch.syspath_prepend(str(site))  # the CLI below, in this process, finds it too
    script = tmp_path / "experiment.py"
    script.write_text(textwrap.dedent(EXPERIMENT))
    workspace = tmp_path / "ws"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(REPO)])}
    subprocess.run([sys.executable, str(script), str(workspace)], env=env, check=True)

    (job,) = list_jobs(Workspace(workspace))
    assert job.launcher == "ticket"
    assert job.state == "submitted"  # a handle without a pid: only the launcher can tell
    deadline = time.monotonic() + 30
    while read_json(job.local_dir / ".corral" / "run.lock") is None:
        assert time.monotonic() < deadline, "the job did not start"
        time.sleep(0.1)
    pid = int((job.local_dir / ".corral" / "ticket").read_text())

    runner = CliRunner()
    killed = runner.invoke(cli, ["jobs", "kill", job.short, "-w", str(workspace)])
    assert killed.exit_code == 0, killed.output
    assert f"{job.name}: ticket {pid} withdrawn" in killed.output

    waited = runner.invoke(cli, ["xp", "wait", "tickets", "-w", str(workspace), "--timeout", "30",
                                 "--interval", "0.2", "--no-live"])
    assert waited.exit_code == 1, waited.output  # it ended, failed: the plugin's poll said so
    assert "failed (killed)" in waited.output
    def gone() -> bool:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return True
        return stat[stat.rindex(")") + 2] in "ZX"

    deadline = time.monotonic() + 10
    while not gone():  # the job wrote its marker, then exits
        assert time.monotonic() < deadline, f"pid {pid} still runs after the kill"
        time.sleep(0.1)
