"""P5: run again an experiment whose N tasks are all done; nothing may be launched.

The done state is made by corral's own start flow (job lock, ``params.json``, ``job.sh``,
``launch.json``) with a launcher whose "job" writes the ``done`` marker at once instead of
spawning a process: the directories a real run leaves, minus the process. The second run,
timed in a fresh process with the ordinary local launcher, builds the N configs, submits
them and leaves the experiment block; a launcher counts what it launches.

    python -m benchmarks.restart [--tasks 10000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import run_child


def seed(tasks: int, workspace: Path) -> float:
    """Make ``tasks`` no-op jobs done in ``workspace``; seconds it took."""
    from benchmarks.noop_task import Noop
    from corral import experiment
    from corral.core.job import Job
    from corral.core.workspace import write_done
    from corral.launchers.local import LocalLauncher

    class SeedLauncher(LocalLauncher):
        """The local launcher's flow, but each job is marked done instead of spawned."""

        def launch(self, jobs: Sequence[Job], *, detached: bool = False) -> list[Any]:
            now = time.time()
            for job in jobs:
                for log in ("stdout", "stderr"):
                    (job.directory / log).touch()
                write_done(job.directory, {"start": now, "end": now})
            return [{"pid": 0, "start": 0, "boot": "seeded"} for _ in jobs]

    start = time.perf_counter()
    with experiment(workspace, "bench", launcher=SeedLauncher(cpu_slots=64)):
        for i in range(tasks):
            Noop(i=i).submit()
    return time.perf_counter() - start


def restart(tasks: int, workspace: Path) -> dict[str, Any]:
    """The second run (call it in a fresh process): wall time and jobs launched."""
    from benchmarks.noop_task import Noop
    from corral import experiment
    from corral.core.job import Job
    from corral.launchers.local import LocalLauncher

    class CountingLauncher(LocalLauncher):
        launched = 0

        def launch(self, jobs: Sequence[Job], *, detached: bool = False) -> list[Any]:
            CountingLauncher.launched += len(jobs)
            return super().launch(jobs, detached=detached)

    start = time.perf_counter()
    with experiment(workspace, "bench", launcher=CountingLauncher(cpu_slots=2)) as xp:
        for i in range(tasks):
            Noop(i=i).submit()
    wall = time.perf_counter() - start
    done = sum(1 for job in xp.jobs.values() if job.state.value == "done")
    return {"wall": wall, "launched": CountingLauncher.launched, "done": done}


def measure(tasks: int, repeat: int) -> dict[str, Any]:
    """Seed once, restart ``repeat`` times (each in a new process); the median run."""
    with tempfile.TemporaryDirectory(prefix="corral-p5-") as tmp:
        workspace = Path(tmp) / "ws"
        seeded = run_child(["benchmarks.restart", "--child", "seed", "--tasks", str(tasks),
                            "--workspace", str(workspace)])
        runs = [run_child(["benchmarks.restart", "--child", "restart", "--tasks", str(tasks),
                           "--workspace", str(workspace)]) for _ in range(repeat)]
    runs.sort(key=lambda r: r["wall"])
    median = dict(runs[(len(runs) - 1) // 2])
    median["seed"] = seeded["wall"]
    median["walls"] = [r["wall"] for r in runs]
    median["launched"] = max(r["launched"] for r in runs)
    return median


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", choices=("seed", "restart"), help=argparse.SUPPRESS)
    parser.add_argument("--workspace", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "seed":
        print(json.dumps({"wall": seed(args.tasks, args.workspace)}), flush=True)
        return
    if args.child == "restart":
        print(json.dumps(restart(args.tasks, args.workspace)), flush=True)
        return
    result = measure(args.tasks, args.repeat)
    print(f"P5 restart of {args.tasks} done tasks, median of {args.repeat}: "
          f"{result['wall']:.2f} s ({result['wall'] / args.tasks * 1e3:.3f} ms/task), "
          f"{result['launched']} launched, {result['done']} done "
          f"(seeded in {result['seed']:.1f} s)")


if __name__ == "__main__":
    main()
