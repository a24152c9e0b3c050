"""Every benchmark in one run, next to the tools users would otherwise pick; one table.

    python -m benchmarks --quick|--full [--only P1,P2,...] [--plot PNG] [--json FILE]

Installs nothing: experimaestro, submitit, fabric and matplotlib come from the ``bench``
extra (``pip install -e '.[bench]'``) when importable, and a missing peer is skipped, saying
so. P3 and P4 need the test rig (P3 also root, for ``sdiag --reset``). ``--quick`` uses
smaller sizes for the slow peers; per-task figures are comparable across sizes.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import REPO, machine

SIZES: dict[str, dict[str, int]] = {
    "quick": {
        "p1": 10_000, "p1_repeat": 5, "p1_peer_repeat": 3,
        "p2": 100, "p2_repeat": 3, "p2_peer_repeat": 1,
        "p3": 200,
        "p4": 500, "p4_fabric": 200, "p4_connect": 50,
        "p5": 10_000, "p5_peer": 1_000, "p5_repeat": 3,
    },
    "full": {
        "p1": 10_000, "p1_repeat": 9, "p1_peer_repeat": 5,
        "p2": 1_000, "p2_repeat": 3, "p2_peer_repeat": 1,
        "p3": 1_000,
        "p4": 500, "p4_fabric": 500, "p4_connect": 100,
        "p5": 10_000, "p5_peer": 10_000, "p5_repeat": 5,
    },
}
PLOT_SIZES = {"quick": {"p1": (100, 1_000), "p2": (10, 30)},
              "full": {"p1": (100, 1_000, 3_000), "p2": (10, 100, 300)}}
BENCHMARKS = ("P1", "P2", "P3", "P4", "P5")
SLOTS = 2


@dataclass
class Row:
    """One line of the table: corral and one reference, measured in this run."""

    bench: str
    what: str
    corral: str
    reference: str
    value: str
    ratio: float | None  # reference / corral (per task or per op): > 1, corral is faster
    target: str
    met: bool | None


def have(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def median_of(repeat: int, run: Callable[[], float]) -> float:
    return statistics.median(run() for _ in range(repeat))


def ms(seconds: float) -> str:
    """``12.3 ms``, ``2.15 s`` or ``103.2 s``."""
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s" if seconds < 10 else f"{seconds:.1f} s"


class Bench:
    """Runs the benchmarks, collects rows, raw figures and skip notes."""

    def __init__(self, mode: str, plot: bool) -> None:
        self.mode = mode
        self.size = SIZES[mode]
        self.plot = plot
        self.rows: list[Row] = []
        self.raw: dict[str, Any] = {}
        self.notes: list[str] = []
        self.curves: dict[str, dict[str, list[tuple[int, float]]]] = {"P1": {}, "P2": {}}

    def note(self, text: str) -> None:
        print(f"  {text}", flush=True)
        self.notes.append(text)

    def curve(self, bench: str, tool: str, n: int, per_task: float) -> None:
        self.curves[bench].setdefault(tool, []).append((n, per_task))

    # --- P1 ------------------------------------------------------------------------------

    def p1(self) -> None:
        from benchmarks import identity

        n = self.size["p1"]
        ours = median_of(self.size["p1_repeat"], lambda: identity.run_once(n))
        self.raw["P1"] = {"tasks": n, "corral": ours}
        self.curve("P1", "corral", n, ours / n)
        if self.plot:
            for m in PLOT_SIZES[self.mode]["p1"]:
                self.curve("P1", "corral", m, median_of(3, lambda m=m: identity.run_once(m)) / m)
        corral = f"{ms(ours)}"
        if not have("experimaestro"):
            self.note("P1: experimaestro not installed, skipped")
            self.rows.append(Row("P1", f"build + identify {n:,} configs", corral, "", "", None,
                                 "≤ 0.7 s", ours <= 0.7))
            return
        from benchmarks import xpm_identity

        theirs = median_of(self.size["p1_peer_repeat"], lambda: xpm_identity.run_once(n))
        self.raw["P1"]["experimaestro"] = theirs
        self.curve("P1", "experimaestro", n, theirs / n)
        if self.plot:
            for m in PLOT_SIZES[self.mode]["p1"]:
                t = median_of(3, lambda m=m: xpm_identity.run_once(m))
                self.curve("P1", "experimaestro", m, t / m)
        ratio = theirs / ours
        self.rows.append(Row("P1", f"build + identify {n:,} configs", corral, "experimaestro",
                             ms(theirs), ratio, "≥ 5x faster, ≤ 0.7 s",
                             ratio >= 5 and ours <= 0.7))

    # --- P2 ------------------------------------------------------------------------------

    def p2(self) -> None:
        from benchmarks import local_tasks

        n = self.size["p2"]
        sizes = [n, *PLOT_SIZES[self.mode]["p2"]] if self.plot else [n]
        per: dict[str, dict[int, float]] = {"corral": {}, "bare": {}, "experimaestro": {}}
        for m in sizes:
            repeat = self.size["p2_repeat"] if m == n else 1
            per["bare"][m] = median_of(repeat, lambda m=m: local_tasks.bare_run(m, SLOTS)) / m
            per["corral"][m] = median_of(
                repeat, lambda m=m: local_tasks.corral_run(m, SLOTS)
            ) / m
            if have("experimaestro"):
                peer_repeat = self.size["p2_peer_repeat"] if m == n else 1
                per["experimaestro"][m] = median_of(
                    peer_repeat, lambda m=m: local_tasks.xpm_run(m)
                ) / m
        for tool, values in per.items():
            for m, v in sorted(values.items()):
                self.curve("P2", tool, m, v)
        self.raw["P2"] = {"tasks": n, "slots": SLOTS, **{t: v.get(n) for t, v in per.items()}}
        ours, bare = per["corral"][n], per["bare"][n]
        what = f"{n:,} no-op local tasks, {SLOTS} slots, per task"
        if per["experimaestro"]:
            theirs = per["experimaestro"][n]
            self.rows.append(Row("P2", what, ms(ours), "experimaestro (local launcher)",
                                 ms(theirs), theirs / ours, "", None))
        else:
            self.note("P2: experimaestro not installed, skipped")
        self.rows.append(Row("P2", what, ms(ours), "bare `python -c pass`", ms(bare),
                             bare / ours, "corral ≤ 1.5x bare (ratio ≥ 0.67)",
                             ours <= 1.5 * bare))

    # --- P3 ------------------------------------------------------------------------------

    def p3(self) -> None:
        from benchmarks import slurm_tasks

        reason = slurm_tasks.unavailable()
        if reason is not None:
            self.note(f"P3: skipped: {reason}")
            return
        n = self.size["p3"]
        tools = ["corral"]
        for peer in ("submitit", "experimaestro"):
            if have(peer):
                tools.append(peer)
            else:
                self.note(f"P3: {peer} not installed, skipped")
        failed: dict[str, str] = {}
        runs = slurm_tasks.run_tools(n, tools, failed=failed)
        if "corral" not in runs:
            raise RuntimeError(f"corral's run {failed.get('corral', 'did not happen')}")
        slurm_tasks.show(runs, n, 1)
        self.raw["P3"] = {
            tool: {"wall": r.wall, "rpcs": r.total_rpcs, "commands": dict(r.commands)}
            for tool, r in runs.items()
        }
        self.raw["P3"]["tasks"] = n
        ours = runs["corral"]

        def cell(r: slurm_tasks.Run) -> str:
            return (f"{r.wall:.1f} s, {r.total_rpcs / n:.2f} RPC/task, "
                    f"{r.commands['sbatch']} sbatch")

        what = f"{n:,} no-op tasks to SLURM: time to all done, controller RPCs"
        if len(runs) == 1:
            self.rows.append(Row("P3", what, cell(ours), "", "", None, "≤ 1.5 RPC/task",
                                 ours.total_rpcs / n <= 1.5))
        for tool, r in runs.items():
            if tool == "corral":
                continue
            met = ours.total_rpcs / n <= 1.5
            if tool == "submitit":
                met = met and ours.wall <= r.wall
            self.rows.append(Row("P3", what, cell(ours), tool, cell(r), r.wall / ours.wall,
                                 "≤ 1.5 RPC/task; wall ≤ submitit's", met))
        for tool, why in failed.items():  # in the table, as what happened
            self.raw["P3"][tool] = {"failed": why}
            self.rows.append(Row("P3", what, cell(ours), tool, why, None,
                                 "≤ 1.5 RPC/task; wall ≤ submitit's", None))

    # --- P4 ------------------------------------------------------------------------------

    def p4(self) -> None:
        if not (REPO / ".rig" / "rig.env").is_file():
            self.note("P4: skipped: the test rig is not up (sudo bash tests/rig/rig.sh up)")
            return
        from benchmarks import ssh_ops

        s = self.size
        r = ssh_ops.measure(s["p4"], s["p4_fabric"], s["p4_connect"])
        self.raw["P4"] = {"ops": s["p4"], **r}
        ours = r["corral"]
        what = f"{s['p4']} small SSH commands, per op"
        corral = f"{ms(ours)} ({r['connections']:.0f} connection)"
        self.note(
            f"P4: corral per op: {ms(ours)} through the shared connection, "
            f"{ms(r['corral_own'])} on a connection of the process alone; a later process's "
            f"first command, the shared connection open: {ms(r['process_first'])} "
            f"(its first login: {ms(r['first'])})"
        )
        if "fabric_fresh" not in r:
            self.note("P4: fabric not installed, skipped")
            self.rows.append(Row("P4", what, corral, "", "", None, "≤ 5 ms/op", ours <= 0.005))
            return
        self.rows.append(Row("P4", what, corral, "fabric, connection per command",
                             ms(r["fabric_fresh"]), r["fabric_fresh"] / ours, "≤ 5 ms/op",
                             ours <= 0.005))
        self.rows.append(Row("P4", what, corral, "fabric, one reused connection",
                             ms(r["fabric_reused"]), r["fabric_reused"] / ours, "≤ 5 ms/op",
                             ours <= 0.005))

    # --- P5 ------------------------------------------------------------------------------

    def p5(self) -> None:
        from benchmarks import restart
        from benchmarks.common import run_child

        n, repeat = self.size["p5"], self.size["p5_repeat"]
        ours = restart.measure(n, repeat)
        self.raw["P5"] = {"tasks": n, "corral": ours}
        corral = f"{ours['wall']:.2f} s ({ours['wall'] / n * 1e3:.3f} ms/task), " \
                 f"{ours['launched']} launched"
        what = f"restart, {n:,} tasks done"
        target = "< 2 s, 0 launched"
        met = ours["wall"] < 2 and ours["launched"] == 0 and ours["done"] == n
        if not have("experimaestro"):
            self.note("P5: experimaestro not installed, skipped")
            self.rows.append(Row("P5", what, corral, "", "", None, target, met))
            return
        import tempfile

        m = self.size["p5_peer"]
        with tempfile.TemporaryDirectory(prefix="corral-p5-xpm-") as tmp:
            ws = str(Path(tmp) / "ws")
            run_child(["benchmarks.xpm_runs", "seed", str(m), ws])
            theirs = run_child(["benchmarks.xpm_runs", "restart", str(m), ws])
        self.raw["P5"]["experimaestro"] = {"tasks": m, **theirs}
        value = (f"{theirs['wall'] / m * 1e3:.2f} ms/task at {m:,} "
                 f"({theirs['wall']:.1f} s), {theirs['launched']} launched")
        self.rows.append(Row("P5", what, corral, "experimaestro", value,
                             (theirs["wall"] / m) / (ours["wall"] / n), target, met))


def table(rows: list[Row]) -> str:
    """The rows as a Markdown table."""
    lines = [
        "| # | what | corral | reference | reference value | ratio | target | met |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = f"{r.ratio:.2f}x" if r.ratio is not None else "-"
        met = {True: "yes", False: "no", None: "-"}[r.met]
        lines.append(f"| {r.bench} | {r.what} | {r.corral} | {r.reference or '-'} | "
                     f"{r.value or '-'} | {ratio} | {r.target or '-'} | {met} |")
    return "\n".join(lines)


def plot(curves: dict[str, dict[str, list[tuple[int, float]]]], path: Path) -> None:
    """Per-task time against the number of tasks, for P1 and P2 (log scales)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import ScalarFormatter

    colors = {"corral": "C0", "experimaestro": "C1", "bare": "C2"}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    titles = {"P1": ("P1: build + identify configs", "µs per config", 1e6),
              "P2": (f"P2: no-op local tasks, {SLOTS} slots", "ms per task", 1e3)}
    for ax, (bench, (title, unit, scale)) in zip(axes, titles.items(), strict=True):
        for tool, points in sorted(curves[bench].items()):
            points = sorted(points)
            ax.plot([n for n, _ in points], [v * scale for _, v in points], marker="o",
                    color=colors.get(tool), label="bare python -c pass" if tool == "bare" else tool)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(ScalarFormatter())
        ax.yaxis.set_minor_formatter(ScalarFormatter())
        ax.set_title(title)
        ax.set_xlabel("number of tasks")
        ax.set_ylabel(unit)
        ax.grid(True, which="both", alpha=0.3)
        if curves[bench]:
            ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    """Run the benchmarks asked for; 0, 1 when one failed, 130 when interrupted."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    size = parser.add_mutually_exclusive_group(required=True)
    size.add_argument("--quick", action="store_true", help="smaller sizes (under 10 minutes)")
    size.add_argument("--full", action="store_true", help="the sizes of the targets")
    parser.add_argument("--only", default=",".join(BENCHMARKS),
                        help="benchmarks to run, e.g. P1,P2 (default: all)")
    parser.add_argument("--plot", type=Path, help="write the P1/P2 plot (PNG) here")
    parser.add_argument("--json", type=Path, help="write every figure measured here")
    args = parser.parse_args()
    only = [b.strip().upper() for b in args.only.split(",") if b.strip()]
    unknown = sorted(set(only) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark {unknown[0]!r}; valid: {', '.join(BENCHMARKS)}")
    if args.plot and not have("matplotlib"):
        parser.error("--plot needs matplotlib (pip install -e '.[bench]')")
    # this checkout's corral, in this process, its children and their jobs
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(REPO), os.environ.get("PYTHONPATH")])
    )
    mode = "quick" if args.quick else "full"
    bench = Bench(mode, plot=args.plot is not None)
    info = machine()
    versions = {m: _version(m) for m in ("experimaestro", "submitit", "fabric")}
    print(f"benchmarks ({mode}) on {info['cpu']}, {info['cores']} cores, {info['memory']}, "
          f"{info['os']}, Python {info['python']}", flush=True)
    print("peers: " + ", ".join(f"{m} {v or 'not installed'}" for m, v in versions.items()))
    started = time.perf_counter()
    status = 0
    try:
        for name in BENCHMARKS:
            if name in only:
                print(f"{name} ...", flush=True)
                t = time.perf_counter()
                try:
                    getattr(bench, name.lower())()
                except KeyboardInterrupt:
                    bench.note(f"{name}: interrupted; what was measured before is below")
                    raise
                except (Exception, SystemExit) as exc:  # the others still run
                    reason = str(exc).strip().splitlines() or [type(exc).__name__]
                    bench.note(f"{name}: failed: {reason[-1]}")
                    status = 1
                print(f"{name} took {time.perf_counter() - t:.0f} s", flush=True)
    except KeyboardInterrupt:
        status = 130  # the table and the JSON of what was measured, still
    finally:
        report(bench, args, mode, info, versions, time.perf_counter() - started)
    return status


def report(bench: Bench, args: argparse.Namespace, mode: str, info: dict[str, str],
           versions: dict[str, str | None], elapsed: float) -> None:
    """Print the table and notes; write the plot and the JSON asked for."""
    print()
    print(f"ratio = reference ÷ corral, per task or per op (> 1: corral is faster); "
          f"{mode} run, {elapsed:.0f} s")
    print(table(bench.rows))
    for note in bench.notes:
        print(f"- {note}")
    if args.plot and any(bench.curves.values()):
        plot(bench.curves, args.plot)
        print(f"plot: {args.plot}")
    if args.json:
        args.json.write_text(json.dumps({
            "mode": mode, "machine": info, "versions": versions, "seconds": elapsed,
            "rows": [asdict(r) for r in bench.rows], "raw": bench.raw,
            "curves": bench.curves, "notes": bench.notes,
        }, indent=1, default=str))


def _version(module: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(module) if have(module) else None
    except PackageNotFoundError:
        return None


if __name__ == "__main__":
    sys.exit(main())
