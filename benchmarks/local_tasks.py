"""P2: trivial tasks on the local launcher, next to bare ``python -c pass`` spawns.

Both sides run with the same parallelism (the launcher's CPU slots). Prints the median
per-task wall time of each and their ratio (target: corral <= 1.5x a bare spawn).
``xpm_run`` runs the same tasks on experimaestro's local launcher, in a process of its own.

    python -m benchmarks.local_tasks [--tasks 1000] [--slots 2] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from benchmarks.noop_task import Noop
from corral import experiment
from corral.launchers.local import LocalLauncher


def corral_run(tasks: int, slots: int) -> float:
    with tempfile.TemporaryDirectory() as ws:
        start = time.perf_counter()
        with experiment(ws, "bench", launcher=LocalLauncher(cpu_slots=slots)):
            for i in range(tasks):
                Noop(i=i).submit()
        return time.perf_counter() - start


def bare_run(tasks: int, slots: int) -> float:
    def spawn(_: int) -> None:
        subprocess.run([sys.executable, "-c", "pass"], check=True)

    start = time.perf_counter()
    with ThreadPoolExecutor(slots) as pool:
        list(pool.map(spawn, range(tasks)))
    return time.perf_counter() - start


def xpm_run(tasks: int) -> float:
    """experimaestro's wall time for ``tasks`` no-op tasks (its experiment block only)."""
    from benchmarks.common import run_child

    with tempfile.TemporaryDirectory(prefix="corral-p2-xpm-") as ws:
        return float(run_child(["benchmarks.xpm_runs", "local", str(tasks), ws])["wall"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--slots", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    ours, bare = [], []
    for _ in range(args.repeat):
        bare.append(bare_run(args.tasks, args.slots) / args.tasks)
        ours.append(corral_run(args.tasks, args.slots) / args.tasks)
    o, b = statistics.median(ours), statistics.median(bare)
    print(f"P2 {args.tasks} no-op tasks, {args.slots} slots, median of {args.repeat}:")
    print(f"  corral local launcher  {o * 1000:7.1f} ms/task")
    print(f"  bare python -c pass    {b * 1000:7.1f} ms/task")
    print(f"  ratio                  {o / b:7.2f}x  (target <= 1.5x)")


if __name__ == "__main__":
    main()
