"""The README's quick start as a new user follows it: the example, run twice, then the
``corral`` commands it shows; and the code at the top of the README."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()


def run(*argv: str, cwd: Path) -> str:
    env = {**os.environ, "PYTHONPATH": str(REPO)}  # this checkout's corral
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{argv} exited {done.returncode}:\n{done.stdout}{done.stderr}"
    return done.stdout


def markers(workspace: Path) -> dict[str, float]:
    return {str(p): p.stat().st_mtime_ns for p in workspace.glob("jobs/*/*/.corral/done")}


def test_the_example_runs_then_finds_every_job_done_and_the_cli_shows_them(tmp_path):
    assert "python examples/quickstart/experiment.py ./workspace" in README
    script = str(REPO / "examples/quickstart/experiment.py")
    workspace = tmp_path / "workspace"
    first = run(sys.executable, script, str(workspace), cwd=tmp_path)  # from another directory
    rows = first.splitlines()[1:]
    assert len(rows) == 6 and all(row.split()[2].replace(".", "").isdigit() for row in rows)
    done = markers(workspace)
    assert len(done) == 12
    assert run(sys.executable, script, str(workspace), cwd=tmp_path) == first
    assert markers(workspace) == done  # the second run ran nothing

    corral = [sys.executable, "-c", "from corral.cli import main; main()"]
    listing = run(*corral, "jobs", "ls", "-w", str(workspace), cwd=tmp_path).splitlines()
    assert len(listing) == 13 and all(line.split()[4] == "done" for line in listing[1:])
    shown_id = re.search(r"corral jobs show -w \./workspace (\w+)", README).group(1)
    shown = run(*corral, "jobs", "show", "-w", str(workspace), shown_id, cwd=tmp_path)
    assert f"identity:  {shown_id}" in shown and "state:     done" in shown
    assert "quickstart" in run(*corral, "xp", "ls", "-w", str(workspace), cwd=tmp_path)
    dry = run(*corral, "dry-run", script, str(tmp_path / "other"), cwd=tmp_path)
    assert "dry run of 'quickstart': 12 job(s); nothing was written or started" in dry
    assert not (tmp_path / "other").exists()


def test_the_code_at_the_top_of_the_readme_runs_and_a_second_run_runs_nothing(tmp_path):
    code = re.search(r"```python\n(.*?)```", README, re.DOTALL).group(1)
    (tmp_path / "sweep.py").write_text(code)
    run(sys.executable, "sweep.py", cwd=tmp_path)
    done = markers(tmp_path / "workspace")
    assert len(done) == 3
    checkpoints = sorted(p.read_text() for p in tmp_path.glob("workspace/jobs/*/*/model.pt"))
    assert checkpoints == ["trained 128", "trained 256", "trained 64"]
    run(sys.executable, "sweep.py", cwd=tmp_path)
    assert markers(tmp_path / "workspace") == done
