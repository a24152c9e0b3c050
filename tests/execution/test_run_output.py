"""What an experiment script prints when its output goes to a file (nohup, a login node)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

SCRIPT = """
import sys
from corral import experiment
from corral.launchers.local import LocalLauncher
from tests.execution.tasks import Record

ws, wait = sys.argv[1], sys.argv[2] == "wait"
if __name__ == "__main__":
    with experiment(ws, "sweep", launcher=LocalLauncher(cpu_slots=2), wait=wait):
        for i in range(3):
            Record(name=f"r{i}", log=ws + ".log").submit()
    print("results: ok")
"""


def run_to_file(tmp_path: Path, *args: str) -> list[str]:
    """Run the script with stdout and stderr in one file, as nohup does; its lines."""
    script = tmp_path / "sweep.py"
    script.write_text(textwrap.dedent(SCRIPT))
    out = tmp_path / "nohup.out"
    with open(out, "w") as file:
        subprocess.run([sys.executable, str(script), *args], stdout=file, stderr=file,
                       stdin=subprocess.DEVNULL, check=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(REPO)})
    return out.read_text().splitlines()


def test_log_lines_and_a_line_saying_what_the_run_did(tmp_path):
    ws = str(tmp_path / "ws")
    lines = run_to_file(tmp_path, ws, "wait")
    done = [line for line in lines if "] done    Record/" in line]
    assert len(done) == 3, lines  # a time-stamped line per job as it ends
    assert "corral: sweep: 3 jobs in" in lines[-3] and lines[-3].endswith(": 3 done")
    assert lines[-2] == "corral: sweep: submitted 3 jobs (local)"
    assert lines[-1] == "results: ok"
    again = run_to_file(tmp_path, ws, "wait")
    assert again[-2:] == ["corral: sweep: all 3 jobs already done, nothing to run", "results: ok"]


def test_a_run_that_does_not_wait_says_what_it_submitted_and_how_to_follow(tmp_path):
    ws = str(tmp_path / "ws")
    lines = run_to_file(tmp_path, ws, "nowait")
    assert lines[-2] == (
        f"corral: sweep: submitted 3 jobs (local); follow them with: corral xp wait sweep -w {ws}"
    )
