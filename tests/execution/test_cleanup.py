"""``corral jobs rm`` and ``corral gc`` on workspaces made by the local launcher."""

from __future__ import annotations

import os
import time
from pathlib import Path

from click.testing import CliRunner, Result

import corral.cli.gc  # the commands register themselves
import corral.cli.jobs
from corral import experiment
from corral.cli import cli
from corral.core import snapshot
from corral.core.workspace import Workspace
from corral.launchers.local import LocalLauncher
from corral.ops.inventory import list_jobs, read_job
from tests.execution.tasks import Record, Waiter


def corral(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), input=input)


def launcher(tmp_path: Path) -> LocalLauncher:
    return LocalLauncher(cpu_slots=4, slots_dir=tmp_path / "slots", cancel_grace=2.0)


def wait_until(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def snapshots(workspace: Path) -> list[str]:
    code = workspace / "code"
    return sorted(p.name for p in code.iterdir() if p.is_dir()) if code.exists() else []


def test_rm_a_done_job_then_gc_its_snapshot(workspace, tmp_path, log):
    with experiment(workspace, "rm", launcher=launcher(tmp_path)) as xp:
        Record(name="a", log=log).submit()
    (job,) = xp.jobs.values()
    (digest,) = snapshots(workspace)
    assert corral("gc", "-w", str(workspace)).output == f"no unreferenced snapshot in {workspace}\n"

    result = corral("jobs", "rm", job.identifier[:8], "-w", str(workspace))
    assert result.exit_code == 0 and result.output == f"{job.name}: removed\n"
    assert not job.directory.exists()

    listed = corral("gc", "--dry-run", "-w", str(workspace))
    assert listed.exit_code == 0
    assert digest[:16] in listed.output and "nothing removed (dry run)" in listed.output
    declined = corral("gc", "-w", str(workspace), input="n\n")
    assert "Remove these 1 snapshot(s)" in declined.output and "nothing removed" in declined.output
    assert snapshots(workspace) == [digest]
    removed = corral("gc", "--yes", "-w", str(workspace))
    assert removed.output.endswith("1 of 1 snapshot(s) removed\n")
    assert snapshots(workspace) == []
    assert not (workspace / "code" / f"{digest}.lock").exists()


def test_rm_refuses_a_running_job_and_one_a_pending_job_depends_on(workspace, tmp_path, log):
    flag = tmp_path / "flag"
    done = Record(name="input", log=log)
    with experiment(workspace, "rm", launcher=launcher(tmp_path)):
        done.submit()
    with experiment(workspace, "rm", launcher=launcher(tmp_path), wait=False) as xp:
        done.submit()  # done already: not run again
        waiter = Waiter(flag=str(flag), inputs=[done])
        waiter.submit()
    ws = Workspace(workspace)
    waiting = next(j for j in xp.jobs.values() if j.task is waiter)
    wait_until(lambda: read_job(ws, waiting.type_id, waiting.identifier).state == "running")
    before = {j.identifier for j in list_jobs(ws)}

    running = corral("jobs", "rm", waiting.identifier[:8], "-w", str(workspace))
    assert running.exit_code == 1
    assert running.stderr == (
        f"corral: error: cannot remove: {waiting.name} is running (stop it first: corral jobs "
        f"kill {waiting.identifier[:12]})\n"
    )
    needed = corral("jobs", "rm", done.__taskdir__.name[:8], "-w", str(workspace))
    assert needed.exit_code == 1
    assert needed.stderr.startswith(f"corral: error: cannot remove: Record/{done.__taskdir__.name[:12]}"
                                    f" is needed by {waiting.name} (running)")
    both = corral("jobs", "rm", done.__taskdir__.name[:8], waiting.identifier[:8], "-w",
                  str(workspace))
    assert both.exit_code == 1 and both.stderr.count("\n") == 1
    assert {j.identifier for j in list_jobs(ws)} == before  # all or nothing

    flag.touch()
    wait_until(lambda: read_job(ws, waiting.type_id, waiting.identifier).state == "done")
    result = corral("jobs", "rm", done.__taskdir__.name[:8], waiting.identifier[:8], "-w",
                    str(workspace))
    assert result.exit_code == 0, result.output
    assert list_jobs(ws) == []
    assert not (workspace / "jobs" / waiting.type_id).exists()


def test_gc_leaves_a_snapshot_an_experiment_holds_and_cleans_debris(workspace, tmp_path):
    code = workspace / "code"
    code.mkdir(parents=True)
    name = "a" * 64
    snapshot.store(code, name, {"m/x.py": b"x"})
    fd = snapshot.hold(code, name)
    try:
        assert "no unreferenced snapshot" in corral("gc", "-w", str(workspace)).output
    finally:
        os.close(fd)
    stale = code / ".tmp-aaaaaaaaaaaa-old"
    stale.mkdir()
    os.utime(stale, (0, 0))
    (code / f"{'b' * 64}.lock").touch()  # a lock file whose snapshot is gone
    result = corral("gc", "-y", "-w", str(workspace))
    assert result.output.endswith("1 of 1 snapshot(s) removed\n")
    assert sorted(p.name for p in code.iterdir()) == []


def test_rm_and_gc_bad_inputs_are_one_line_errors(tmp_path, workspace):
    workspace.mkdir()
    for args in (["jobs", "rm", "nope"], ["gc", "-w", str(tmp_path / "missing")]):
        if args[0] == "jobs":
            args = [*args, "-w", str(workspace)]
        result = corral(*args)
        assert result.exit_code == 1 and result.stderr.count("\n") == 1
        assert result.stderr.startswith("corral: error: ")
    assert corral("jobs", "rm", "-w", str(workspace)).exit_code == 2  # click: missing JOB_IDS
