"""``corral jobs``, ``corral xp`` and ``corral dry-run`` on workspaces made by the local launcher."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import corral.cli.dryrun  # the commands register themselves on the group
import corral.cli.jobs
import corral.cli.xp
from corral import JobFailedError, experiment
from corral.cli import cli
from corral.core import procs
from corral.core.workspace import Workspace, read_json
from corral.launchers.local import LocalLauncher
from corral.ops.inventory import list_jobs
from tests.execution.tasks import Fail, Record, Talk

REPO = Path(__file__).resolve().parents[2]


def corral(*args: str, input: str | None = None, env: dict | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), input=input, env=env, catch_exceptions=False)


def launcher(tmp_path: Path) -> LocalLauncher:
    return LocalLauncher(cpu_slots=4, slots_dir=tmp_path / "slots", cancel_grace=2.0)


def wait_until(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.fixture
def finished(tmp_path, workspace, log) -> dict[str, str]:
    """A workspace with one done and one failed job; their identifiers by name."""
    with pytest.raises(JobFailedError):
        with experiment(workspace, "mixed", launcher=launcher(tmp_path)) as xp:
            Record(name="ok", log=log).submit()
            Fail(how="raise", log=log).submit()
    return {type(j.task).__name__: j.identifier for j in xp.jobs.values()}


def test_a_mistyped_experiment_or_job_gets_the_closest_name(finished, workspace):
    xp = CliRunner().invoke(cli, ["xp", "wait", "mixd", "-w", str(workspace)])
    assert xp.exit_code == 1
    assert xp.stderr.startswith("corral: error: no experiment 'mixd' (did you mean 'mixed'?)")
    typo = "Recrod/" + finished["Record"][:12]
    job = CliRunner().invoke(cli, ["jobs", "show", typo, "-w", str(workspace)])
    assert job.exit_code == 1
    assert f"(did you mean 'Record/{finished['Record'][:12]}'?)" in job.stderr, job.stderr


def test_ls_filters_by_experiment_and_task_and_counts(finished, workspace, tmp_path, log):
    with experiment(workspace, "other", launcher=launcher(tmp_path)):
        Record(name="elsewhere", log=log).submit()
    everything = CliRunner().invoke(cli, ["jobs", "ls", "-w", str(workspace)])
    assert len(everything.stdout.splitlines()) == 4
    assert everything.stderr.splitlines()[-1] == "3 jobs: 2 done, 1 failed"
    mixed = CliRunner().invoke(cli, ["jobs", "ls", "--xp", "mixed", "-w", str(workspace)])
    assert {line.split()[0] for line in mixed.stdout.splitlines()[1:]} == {
        i[:12] for i in finished.values()
    }
    records = CliRunner().invoke(cli, ["jobs", "ls", "--task", "Record", "--xp", "mixed",
                                       "-w", str(workspace)])
    assert [line.split()[0] for line in records.stdout.splitlines()[1:]] == [
        finished["Record"][:12]
    ]
    assert records.stderr.splitlines()[-1] == "1 job: 1 done"
    by_type = CliRunner().invoke(cli, ["jobs", "ls", "--task", "tests.execution.tasks.Fail",
                                       "-w", str(workspace)])
    assert len(by_type.stdout.splitlines()) == 2
    # a task that exists, with no job in the state asked: nothing matches, no error
    none = CliRunner().invoke(cli, ["jobs", "ls", "--task", "Record", "--state", "failed",
                                    "-w", str(workspace)])
    assert none.exit_code == 0 and none.stdout.startswith("no jobs in ")


def test_ls_lists_jobs_with_their_state(finished, workspace):
    out = corral("jobs", "ls", "-w", str(workspace)).output.splitlines()
    assert out[0].split() == ["ID", "TASK", "LAUNCHER", "HOST", "STATE", "SLURM", "AGE"]
    rows = {line.split()[0]: line.split() for line in out[1:]}
    assert rows[finished["Record"][:12]][1:3] == ["Record", "local"]
    assert rows[finished["Record"][:12]][4] == "done"
    assert rows[finished["Fail"][:12]][4:6] == ["failed", "(failed)"]
    failed = corral("jobs", "ls", "--state", "failed", "-w", str(workspace)).output
    assert finished["Fail"][:12] in failed and finished["Record"][:12] not in failed
    assert finished["Record"][:12] in corral("jobs", "ls", "--since", "1h", "-w",
                                              str(workspace)).output
    assert "no jobs" in corral("jobs", "ls", "--since", "2999-01-01", "-w", str(workspace)).output


def test_workspace_from_the_environment_and_missing(finished, workspace, tmp_path):
    via_env = corral("jobs", "ls", env={"CORRAL_WORKSPACE": str(workspace)})
    assert finished["Fail"][:12] in via_env.output
    result = CliRunner().invoke(cli, ["jobs", "ls", "-w", str(tmp_path / "nope")])
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"corral: error: no workspace at {tmp_path / 'nope'}")


def test_show_gives_params_paths_environment_and_script(finished, workspace):
    out = corral("jobs", "show", finished["Fail"][:6], "-w", str(workspace)).output
    job_dir = Workspace(workspace).job_dir("tests.execution.tasks.Fail", finished["Fail"])
    assert f"identity:  {finished['Fail']}" in out
    assert "message:   ValueError: bad value 42" in out
    assert f"stderr:    {job_dir}/stderr" in out
    assert '  how = "raise"' in out
    assert "environment (set by submit hooks, plugins and the launcher):\n  CORRAL_CPU_SLOTS=" in out
    assert out.endswith((job_dir / "job.sh").read_text())


def test_ids_are_prefixes_of_identities(finished, workspace):
    by_type = corral("jobs", "show", f"Fail/{finished['Fail'][:3]}", "-w", str(workspace))
    assert f"identity:  {finished['Fail']}" in by_type.output
    result = CliRunner().invoke(cli, ["jobs", "log", "zzz", "-w", str(workspace)])
    assert result.exit_code == 1 and result.stderr.count("\n") == 1
    assert "no job 'zzz'" in result.stderr and "Record/" in result.stderr


def test_log_prints_stdout_or_stderr(finished, workspace):
    err = corral("jobs", "log", finished["Fail"][:8], "--err", "-w", str(workspace)).output
    assert err.rstrip().endswith("ValueError: bad value 42")
    assert corral("jobs", "log", finished["Record"][:8], "-w", str(workspace)).output == ""


def test_log_follow_prints_until_the_job_ends(tmp_path, workspace):
    with experiment(workspace, "talk", launcher=launcher(tmp_path), wait=False) as xp:
        Talk(lines=6).submit()
    (job,) = xp.jobs.values()
    started = time.monotonic()
    out = corral("jobs", "log", "-f", job.identifier[:10], "-w", str(workspace)).output
    assert out == "".join(f"line {i}\n" for i in range(6))
    assert time.monotonic() - started >= 0.6  # it followed a job still writing
    assert list_jobs(Workspace(workspace))[0].state == "done"


def test_kill_stops_a_running_job(tmp_path, workspace, log):
    with experiment(workspace, "long", launcher=launcher(tmp_path), wait=False) as xp:
        Record(name="long", sleep=60, log=log).submit()
        Record(name="short", log=log).submit()
    long, short = xp.jobs.values()
    wait_until(lambda: (long.directory / ".corral" / "run.lock").exists())
    wait_until(lambda: (short.directory / ".corral" / "done").exists())
    handle = read_json(long.directory / ".corral" / "launch.json")["handle"]
    out = corral("jobs", "kill", long.identifier[:8], short.identifier[:8], "-w", str(workspace))
    assert f"Record/{long.identifier[:12]}: killed (pid {handle['pid']})" in out.output
    assert f"Record/{short.identifier[:12]}: already done" in out.output
    assert not procs.handle_alive(handle)
    failed = read_json(long.directory / ".corral" / "failed")
    assert failed["reason"] == "killed" and failed["message"] == "killed by SIGTERM"


def test_clean_removes_failed_jobs_after_confirmation(finished, workspace):
    ws = Workspace(workspace)
    fail_dir = ws.job_dir("tests.execution.tasks.Fail", finished["Fail"])
    declined = corral("jobs", "clean", "-w", str(workspace), input="n\n").output
    assert finished["Fail"][:12] in declined and "nothing removed" in declined
    assert fail_dir.exists()
    out = corral("jobs", "clean", "--yes", "-w", str(workspace)).output
    assert f"Fail/{finished['Fail'][:12]}: removed" in out and "1 of 1 removed" in out
    assert not fail_dir.exists()
    assert [j.state for j in list_jobs(ws)] == ["done"]
    assert "nothing to clean" in corral("jobs", "clean", "-w", str(workspace)).output


def test_clean_removes_a_job_never_started_unless_a_client_is_starting_it(workspace):
    from filelock import FileLock

    from corral.core.workspace import SUBMIT_LOCK, state_dir

    ws = Workspace(workspace)
    orphan = ws.job_dir("tests.execution.tasks.Record", "a" * 64)  # its client died starting it
    state_dir(orphan).mkdir(parents=True)
    (orphan / "params.json").write_text("{}")
    (orphan / "job.sh").write_text("#!/bin/bash\n")
    assert [j.state for j in list_jobs(ws)] == ["created"]
    with FileLock(state_dir(orphan) / SUBMIT_LOCK):  # a client is starting it right now
        out = corral("jobs", "clean", "--yes", "-w", str(workspace)).output
    assert "kept: a client is submitting it" in out and orphan.exists()
    out = corral("jobs", "clean", "--yes", "-w", str(workspace)).output
    assert f"Record/{'a' * 12}: removed" in out and not orphan.exists()


def test_xp_ls_wait_and_kill(tmp_path, workspace, log):
    with experiment(workspace, "detached", launcher=launcher(tmp_path), wait=False):
        Record(name="quick", sleep=0.5, log=log).submit()
        Fail(how="exit", log=log).submit()
    waited = CliRunner().invoke(cli, ["xp", "wait", "detached", "--interval", "0.1",
                                      "-w", str(workspace)])
    assert waited.exit_code == 1
    lines = waited.stdout.splitlines()
    assert lines[-2].endswith("1/2 done (1 done, 1 failed)")
    assert lines[-1].startswith("  Fail/") and "failed (failed)" in lines[-1]
    with experiment(workspace, "fine", launcher=launcher(tmp_path), wait=False):
        Record(name="fine", sleep=0.3, log=log).submit()
    assert corral("xp", "wait", "fine", "--interval", "0.1", "-w", str(workspace)).exit_code == 0
    with experiment(workspace, "stopped", launcher=launcher(tmp_path), wait=False) as xp:
        Record(name="forever", sleep=60, log=log).submit()
    (job,) = xp.jobs.values()
    wait_until(lambda: (job.directory / ".corral" / "run.lock").exists())
    killed = corral("xp", "kill", "stopped", "-w", str(workspace)).output
    assert f"Record/{job.identifier[:12]}: killed" in killed
    listing = corral("xp", "ls", "-w", str(workspace)).output.splitlines()
    rows = {line.split()[0]: line for line in listing[1:]}
    assert listing[0].split() == ["EXPERIMENT", "RUN", "RUNS", "JOBS", "STATES", "AGE"]
    assert "1 done, 1 failed" in rows["detached"]
    assert "1 done" in rows["fine"] and "1 failed" in rows["stopped"]
    unknown = CliRunner().invoke(cli, ["xp", "wait", "nope", "-w", str(workspace)])
    assert unknown.exit_code == 1 and unknown.stderr.count("\n") == 1
    assert "no experiment 'nope'" in unknown.stderr and "detached" in unknown.stderr


SCRIPT = '''
import sys
from corral import SubmitHook, experiment
from corral.launchers.local import LocalLauncher
from tests.execution.tasks import After, Echo, Record


class with_value(SubmitHook):
    def process(self, job, launcher):
        job.environ["CORRAL_TEST_VALUE"] = "from a hook"


@with_value()
class HookedEcho(Echo):
    pass


if __name__ == "__main__":
    ws, slots, log = sys.argv[1:]
    with experiment(ws, "planned", launcher=LocalLauncher(cpu_slots=2, slots_dir=slots)):
        first = Record(name="first", log=log)
        first.submit()
        After(before=first, log=log).submit()
        HookedEcho(text="hi").submit()
'''


def test_dry_run_prints_exactly_the_scripts_that_then_run(tmp_path, workspace, log):
    script = tmp_path / "plan.py"
    script.write_text(textwrap.dedent(SCRIPT))
    args = [str(workspace), str(tmp_path / "slots"), str(log)]
    env = {"PYTHONPATH": str(REPO)}
    result = corral("dry-run", str(script), *args, env=env)
    assert result.exit_code == 0, result.output
    out = result.output
    assert not workspace.exists() and not log.exists()  # nothing written, nothing run
    printed = {}
    for block in out.split("== job ")[1:]:
        directory = block.split("directory:  ", 1)[1].split("\n", 1)[0]
        printed[directory] = block.split("--- job.sh ---\n", 1)[1].split("--- end of job.sh ---")[0]
    assert len(printed) == 3
    assert "+ CORRAL_TEST_VALUE=from a hook  [submit hook with_value]" in out
    assert "after:      Record/" in out
    assert f"submit:     bash {next(iter(printed))}/job.sh" in out
    assert out.rstrip().endswith("dry run of 'planned': 3 job(s); nothing was written or started")
    # Run as a user would, through the interpreter's other name (python, not python3):
    # the scripts written are still the ones printed.
    here = Path(sys.executable)
    other = here.with_name("python" if here.name != "python" else "python3")
    python = str(other) if other.exists() and other.samefile(here) else sys.executable
    subprocess.run([python, str(script), *args], check=True, cwd=tmp_path,
                   env={**os.environ, **env})
    for directory, text in printed.items():
        assert (Path(directory) / "job.sh").read_text() == text
    echo = next(d for d in printed if "HookedEcho" in d)
    assert json.loads((Path(echo) / "echo.json").read_text())["env"] == "from a hook"
    again = corral("dry-run", str(script), *args, env=env).output
    assert again.count("state:      done already: it would not run again") == 3
    assert ", 3 done already;" in again


def test_tables_use_rich_on_a_terminal(monkeypatch, capsys):
    from corral.cli.options import print_table

    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    print_table(("ID", "STATE"), [["3fa2", "failed (oom)"]])
    out = capsys.readouterr().out
    assert "ID" in out and "failed (oom)" in out
    monkeypatch.setattr(sys.stdout, "isatty", lambda: False)
    print_table(("ID", "STATE"), [["3fa2", "failed (oom)"]])
    assert capsys.readouterr().out == "ID    STATE\n3fa2  failed (oom)\n"


def test_xp_wait_live_shows_the_progress_display(tmp_path, workspace, log):
    with experiment(workspace, "watched", launcher=launcher(tmp_path), wait=False):
        Record(name="quick", sleep=0.5, log=log).submit()
        Fail(how="exit", log=log).submit()
    waited = CliRunner().invoke(cli, ["xp", "wait", "watched", "--live", "--interval", "0.1",
                                      "-w", str(workspace)])
    assert waited.exit_code == 1
    lines = waited.stdout.splitlines()
    # the display: a progress line, the counts by state per launcher, the failures
    assert lines[0].startswith("watched ") and "2/2 finished" in lines[0]
    assert lines[1].split() == ["launcher", "waiting", "ready", "submitted", "running", "done",
                                "failed"]
    assert lines[2].split() == ["local", "0", "0", "0", "0", "1", "1"]
    assert lines[3] == "failed" and lines[4].split()[1:4] == ["local", "failed", "SystemExit:"]
    # then the summary line and the failed jobs, as without the display
    assert any(line.startswith("corral: watched ") and "1 done, 1 failed" in line
               for line in lines)
    assert lines[-1].startswith("  Fail/") and "failed (failed)" in lines[-1]
    assert not any(line.startswith("[") for line in lines)  # no log lines beside it
