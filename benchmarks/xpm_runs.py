"""experimaestro's side of P2 and P5, run in a process of its own (prints one JSON line).

    python -m benchmarks.xpm_runs local|seed|restart TASKS WORKSPACE

``local``: TASKS no-op tasks on experimaestro's local launcher (its default: no limit on
concurrent jobs); ``seed``: the same experiment with every job adopted as done without
running (experimaestro's ``__xpm_output_valid__``); ``restart``: run it again, counting the
jobs that ran (a job that runs leaves its ``.out`` file).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from benchmarks.xpm_noop import SEED_ENV


def submit_all(tasks: int, workspace: Path) -> float:
    """Wall time of the experiment block that submits ``tasks`` no-op tasks and waits."""
    from experimaestro import experiment

    from benchmarks.xpm_noop import XpmNoop

    start = time.perf_counter()
    with experiment(workspace, "bench", no_environmental_impact=True):
        for i in range(tasks):
            XpmNoop.C(i=i).submit()
    return time.perf_counter() - start


def ran(workspace: Path) -> tuple[int, int]:
    """(jobs with a ``.out`` file, jobs with a ``.done`` marker)."""
    jobs = list((workspace / "jobs").glob("*/*"))
    outs = sum(1 for j in jobs if any(j.glob("*.out")))
    done = sum(1 for j in jobs if any(j.glob("*.done")))
    return outs, done


def main() -> None:
    what, tasks, workspace = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    if what == "seed":
        os.environ[SEED_ENV] = "1"
    else:
        os.environ.pop(SEED_ENV, None)
    before = ran(workspace)[0] if workspace.exists() else 0
    wall = submit_all(tasks, workspace)
    outs, done = ran(workspace)
    print(json.dumps({"wall": wall, "launched": outs - before, "done": done}), flush=True)


if __name__ == "__main__":
    main()
