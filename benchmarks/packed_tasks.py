"""P8: many no-op tasks on SLURM — corral packed vs corral's plain arrays vs Parsl's
HighThroughputExecutor with its SlurmProvider, on the test rig, in one run.

Each tool runs alone, in a child process of its own (see :mod:`benchmarks.slurm_tasks`:
counting wrappers of the SLURM commands on its PATH, ``sdiag --reset`` before), with the
same allocation for the packed tools: ``--workers`` allocations of ``--slots`` CPUs each.
For each: wall time from the first submission to all done, tasks per second, controller
RPCs per task, sbatch count. Goals: packed >= 10x faster than arrays, <= 0.01 RPC/task,
faster than Parsl, >= 200 no-op tasks/s on the 2-core machine.

    python -m benchmarks.packed_tasks [--tasks 10000] [--array-tasks 1000] [--sleepers 1000]

``--sleepers N`` also runs N packed tasks of 1 s each, whose goal is a wall time within 1.3x
of ``N x 1 s / slots`` (from the first submission to all done).

Plain arrays run ``--array-tasks`` tasks (the same per-task figures, without waiting an
hour for 10,000 one-CPU allocations); Parsl needs ``pip install parsl``.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys

from benchmarks.slurm_tasks import PeerFailed, Run, measure, rig_environ, unavailable

TOOLS = ("corral-packed", "corral", "parsl")


def run(tasks: int, array_tasks: int, tools: list[str], workers: int, slots: int,
        failed: dict[str, str]) -> dict[str, tuple[Run, int]]:
    """The run of each tool and its number of tasks."""
    reason = unavailable()
    if reason is not None:
        raise SystemExit(reason)
    environ = rig_environ()
    args = argparse.Namespace(xpm_interval=None, pack_workers=workers, pack_slots=slots)
    runs: dict[str, tuple[Run, int]] = {}
    for tool in tools:
        if tool == "parsl" and importlib.util.find_spec("parsl") is None:
            failed[tool] = "not installed (pip install parsl)"
            continue
        n = array_tasks if tool == "corral" else tasks
        print(f"running {tool}: {n} tasks...", flush=True)
        try:
            runs[tool] = (measure(tool, n, args, environ), n)
        except PeerFailed as exc:
            failed[tool] = str(exc)
            print(f"  {tool}: {exc}", flush=True)
    return runs


def show(runs: dict[str, tuple[Run, int]], workers: int, slots: int) -> None:
    print(f"P8 no-op tasks on SLURM (rig), {workers} allocations of {slots} CPUs for the packed "
          "tools, one run each:")
    print(f"  {'tool':<15}{'tasks':>7}{'sbatch':>8}{'wall s':>9}{'tasks/s':>9}"
          f"{'ctl RPCs':>10}{'RPC/task':>10}{'per task vs packed':>20}")
    base = runs.get("corral-packed")
    for tool, (r, n) in runs.items():
        per_task = r.wall / n
        ratio = ""
        if base is not None and tool != "corral-packed":
            ratio = f"{per_task / (base[0].wall / base[1]):19.1f}x"
        print(f"  {tool:<15}{n:>7}{r.commands['sbatch']:>8}{r.wall:>9.1f}{n / r.wall:>9.0f}"
              f"{r.total_rpcs:>10}{r.total_rpcs / n:>10.4f}{ratio}")
    print("  goals: packed >= 10x faster per task than arrays, <= 0.01 RPC/task, faster than "
          "Parsl, >= 200 tasks/s")


def sleepers(n: int, workers: int, slots: int, failed: dict[str, str]) -> None:
    """N packed tasks of 1 s: wall time against the ideal ``n / (workers x slots)`` s."""
    environ = rig_environ()
    args = argparse.Namespace(xpm_interval=None, pack_workers=workers, pack_slots=slots,
                              sleep=1.0)
    print(f"running corral-packed: {n} tasks of 1 s...", flush=True)
    try:
        r = measure("corral-packed", n, args, environ)
    except PeerFailed as exc:
        failed["corral-packed (1 s tasks)"] = str(exc)
        return
    ideal = n / (workers * slots)
    print(f"P8 {n} packed tasks of 1 s on {workers} x {slots} slots: {r.wall:.1f} s, ideal "
          f"{ideal:.1f} s: {r.wall / ideal:.2f}x (goal <= 1.3x); {r.commands['sbatch']} sbatch, "
          f"{r.total_rpcs / n:.4f} RPC/task")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--array-tasks", type=int, default=1_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--slots", type=int, default=2)
    parser.add_argument("--tools", default=",".join(TOOLS))
    parser.add_argument("--sleepers", type=int, default=0)
    args = parser.parse_args()
    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    unknown = set(tools) - set(TOOLS)
    if unknown:
        parser.error(f"unknown tool {sorted(unknown)[0]!r}; valid: {', '.join(TOOLS)}")
    failed: dict[str, str] = {}
    runs = run(args.tasks, args.array_tasks, tools, args.workers, args.slots, failed)
    if runs:
        show(runs, args.workers, args.slots)
    if args.sleepers:
        sleepers(args.sleepers, args.workers, args.slots, failed)
    for tool, why in failed.items():
        print(f"  {tool}: {why}")
    sys.exit(1 if failed and not runs else 0)


if __name__ == "__main__":
    main()
