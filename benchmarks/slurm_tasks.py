"""P3: N no-op tasks to SLURM — corral's SlurmLauncher vs submitit and experimaestro.

Needs the test rig (``sudo bash tests/rig/rig.sh up``) and root (for ``sdiag --reset``).
Each tool runs alone, one after the other, in a child process of its own with a fresh
workspace and counting wrappers of the SLURM commands first on its PATH (jobs inherit that
PATH, so ``srun`` inside a job is counted too). For each tool it prints:

- SLURM commands run: ``sbatch``, status calls (``squeue``, ``sacct``) and the others;
- controller RPCs: the "count:" fields of sdiag's RPC statistics by message type, reset
  before the run (sdiag's own ``REQUEST_STATS_INFO`` left out); ``sacct`` goes to slurmdbd;
- wall time from the first submission to all tasks done;

then the ratios of the peers to corral. Target: one array per MaxArraySize tasks, <= 1.5
controller RPCs per task, wall time no worse than submitit. The peers' job processes use
this interpreter, so run it from a venv that has them (``pip install -e .[bench]``):

    python -m benchmarks.slurm_tasks [--tasks 200] [--tools corral,submitit,experimaestro]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TOOLS = ("corral", "submitit", "experimaestro")
WRAPPED = ("sbatch", "squeue", "sacct", "scontrol", "srun", "scancel", "sacctmgr", "sinfo")
STATUS = ("squeue", "sacct")
SETTLE = 2.0  # seconds for slurmd's last completion messages to reach the controller

WRAPPER = """#!/bin/sh
echo {name} >> {log}
exec /usr/bin/{name} "$@"
"""
# sbatch's output is logged too, so that every job submitted can be cancelled afterwards
SBATCH_WRAPPER = """#!/bin/sh
out=$(/usr/bin/sbatch "$@")
rc=$?
[ -n "$out" ] && echo "$out"
echo "sbatch $out" >> {log}
exit $rc
"""


def noop(i: int) -> int:
    """submitit's task."""
    return i


# --- the child: one tool submits N tasks and waits for them ---------------------------------


def child_corral(tasks: int, workspace: Path, args: argparse.Namespace) -> dict[str, object]:
    from benchmarks.noop_task import Noop
    from corral import experiment
    from corral.launchers.slurm import SlurmLauncher

    launcher = SlurmLauncher(python=sys.executable, time="5")
    start = time.perf_counter()
    with experiment(workspace, "bench", launcher=launcher):
        for i in range(tasks):
            Noop(i=i).submit()
    return {"wall": time.perf_counter() - start, "counts": dict(launcher.counts)}


def child_submitit(tasks: int, workspace: Path, args: argparse.Namespace) -> dict[str, object]:
    import submitit

    executor = submitit.AutoExecutor(folder=workspace / "%j")
    executor.update_parameters(timeout_min=5)
    start = time.perf_counter()
    jobs = executor.map_array(noop, range(tasks))
    results = [job.result() for job in jobs]
    wall = time.perf_counter() - start
    assert results == list(range(tasks))
    return {"wall": wall}


def child_experimaestro(
    tasks: int, workspace: Path, args: argparse.Namespace
) -> dict[str, object]:
    from experimaestro import experiment
    from experimaestro.launchers.slurm import SlurmLauncher, SlurmOptions

    from benchmarks.xpm_noop import XpmNoop

    # its sbatch, sacct, squeue and scancel are run from binpath, not looked up on PATH
    options: dict[str, object] = {"binpath": args.bin}
    if args.xpm_interval is not None:
        options["interval"] = args.xpm_interval
    launcher = SlurmLauncher(options=SlurmOptions(time="5"), **options)
    start = time.perf_counter()
    with experiment(workspace, "bench", launcher=launcher, no_environmental_impact=True):
        for i in range(tasks):
            XpmNoop.C(i=i).submit()
    return {"wall": time.perf_counter() - start}


def child_corral_packed(tasks: int, workspace: Path, args: argparse.Namespace) -> dict[str, object]:
    from benchmarks.noop_task import Noop, Sleep
    from corral import experiment
    from corral.launchers.packing import Pack
    from corral.launchers.slurm import SlurmLauncher

    workers, slots = args.pack_workers, args.pack_slots
    launcher = SlurmLauncher(python=sys.executable, time="30",
                             pack=Pack(workers=workers, per_worker=slots, idle="10s"))
    start = time.perf_counter()
    with experiment(workspace, "bench", launcher=launcher, progress=False):
        for i in range(tasks):
            (Sleep(i=i, seconds=args.sleep) if args.sleep else Noop(i=i)).submit()
    return {"wall": time.perf_counter() - start, "counts": dict(launcher.counts)}


def child_parsl(tasks: int, workspace: Path, args: argparse.Namespace) -> dict[str, object]:
    import parsl
    from parsl.config import Config
    from parsl.executors import HighThroughputExecutor
    from parsl.launchers import SingleNodeLauncher
    from parsl.providers import SlurmProvider

    workers, slots = args.pack_workers, args.pack_slots
    provider = SlurmProvider(
        nodes_per_block=1, init_blocks=workers, min_blocks=0, max_blocks=workers,
        walltime="00:10:00", launcher=SingleNodeLauncher(), cores_per_node=slots,
        scheduler_options="", worker_init=f"export PYTHONPATH={REPO}",
    )
    executor = HighThroughputExecutor(
        label="htex", address="127.0.0.1", max_workers_per_node=slots, cores_per_worker=1,
        provider=provider,
    )
    config = Config(executors=[executor], run_dir=str(workspace / "runinfo"))
    start = time.perf_counter()
    with parsl.load(config):
        app = parsl.python_app(noop)
        results = [f.result() for f in [app(i) for i in range(tasks)]]
    wall = time.perf_counter() - start
    assert results == list(range(tasks))
    return {"wall": wall}


CHILDREN = {
    "corral": child_corral,
    "submitit": child_submitit,
    "experimaestro": child_experimaestro,
    "corral-packed": child_corral_packed,
    "parsl": child_parsl,
}


# --- the parent: wrappers, sdiag, cleanup ----------------------------------------------------


@dataclass
class Run:
    tool: str
    wall: float
    commands: Counter[str]
    rpcs: Counter[str]
    queue_before: int
    queue_after: int
    reported: dict[str, int] = field(default_factory=dict)

    @property
    def total_rpcs(self) -> int:
        return sum(self.rpcs.values())


def rig_environ() -> dict[str, str]:
    env = REPO / ".rig" / "rig.env"
    if not env.is_file():
        raise SystemExit(f"the test rig is not up (no {env}): sudo bash tests/rig/rig.sh up")
    environ = dict(os.environ)
    for line in env.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() == "SLURM_CONF":
            environ.setdefault("SLURM_CONF", value.strip())
    return environ


def slurm(argv: list[str], environ: dict[str, str]) -> str:
    """Run a SLURM command itself (not a wrapper): the benchmark's own calls are not counted."""
    done = subprocess.run(
        [f"/usr/bin/{argv[0]}", *argv[1:]], env=environ, capture_output=True, text=True
    )
    return done.stdout


def queue_length(environ: dict[str, str]) -> int:
    return len(slurm(["squeue", "-h"], environ).splitlines())


def controller_rpcs(environ: dict[str, str]) -> Counter[str]:
    """RPC counts by message type since the last ``sdiag --reset``."""
    out = slurm(["sdiag"], environ)
    section = out.split("Remote Procedure Call statistics by message type", 1)[-1]
    section = section.split("Remote Procedure Call statistics by user", 1)[0]
    counts: Counter[str] = Counter()
    for name, count in re.findall(r"^\s*(\w+)\s+\(\s*\d+\)\s+count:(\d+)", section, re.M):
        if name != "REQUEST_STATS_INFO":
            counts[name] += int(count)
    return counts


def write_wrappers(bindir: Path, log: Path) -> None:
    bindir.mkdir()
    for name in WRAPPED:
        template = SBATCH_WRAPPER if name == "sbatch" else WRAPPER
        path = bindir / name
        path.write_text(template.format(name=name, log=log))
        path.chmod(0o755)


def read_log(log: Path) -> tuple[Counter[str], list[str]]:
    """Commands run, by name, and the SLURM job ids sbatch printed."""
    commands: Counter[str] = Counter()
    ids = []
    lines = log.read_text().splitlines() if log.exists() else []
    for line in lines:
        name, _, out = line.partition(" ")
        commands[name] += 1
        if found := re.search(r"(\d+)", out):
            ids.append(found.group(1))
    return commands, ids


class PeerFailed(Exception):
    """A tool's run failed or passed its time limit: reported as such, the others go on."""


def time_limit(tasks: int) -> float:
    """Seconds a tool's run of ``tasks`` may take (each of corral and submitit needs well under
    a tenth of it on the rig; experimaestro, polling sacct each minute, about half)."""
    return 120 + 1.5 * tasks


def measure(tool: str, tasks: int, args: argparse.Namespace, environ: dict[str, str]) -> Run:
    """One run of ``tool`` in a fresh workspace; its jobs cancelled and files removed after.

    :raises PeerFailed: it failed, or was still running after :func:`time_limit`.
    """
    tmp = Path(tempfile.mkdtemp(prefix=f"corral-p3-{tool}-"))
    log, bindir = tmp / "calls.log", tmp / "bin"
    write_wrappers(bindir, log)
    argv = [sys.executable, "-m", "benchmarks.slurm_tasks", "--child", tool,
            "--tasks", str(tasks), "--workspace", str(tmp / "ws"), "--bin", str(bindir),
            "--pack-workers", str(getattr(args, "pack_workers", 4)),
            "--pack-slots", str(getattr(args, "pack_slots", 2)),
            "--sleep", str(getattr(args, "sleep", 0.0))]
    if args.xpm_interval is not None:
        argv += ["--xpm-interval", str(args.xpm_interval)]
    child_env = {
        **environ,
        "PATH": f"{bindir}{os.pathsep}{environ.get('PATH', '')}",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), environ.get("PYTHONPATH")])),
    }
    queue_before = queue_length(environ)
    slurm(["sdiag", "--reset"], environ)
    limit = time_limit(tasks)
    try:
        try:
            done = subprocess.run(argv, env=child_env, cwd=REPO, capture_output=True,
                                  text=True, timeout=limit)
        except subprocess.TimeoutExpired:
            raise PeerFailed(f"timed out after {limit:.0f} s") from None
        time.sleep(SETTLE)
        rpcs = controller_rpcs(environ)
        queue_after = queue_length(environ)
        if done.returncode != 0:
            tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise PeerFailed(f"failed (exit {done.returncode}): {tail}")
        report = json.loads(done.stdout.strip().splitlines()[-1])
        commands, _ = read_log(log)
        return Run(tool, report["wall"], commands, rpcs, queue_before, queue_after,
                   report.get("counts", {}))
    finally:
        _, ids = read_log(log)
        live = slurm(["squeue", "-h", "-o", "%F", "-j", ",".join(ids)], environ) if ids else ""
        if live.split():
            slurm(["scancel", *sorted(set(live.split()))], environ)
        shutil.rmtree(tmp, ignore_errors=True)


def median_run(runs: list[Run]) -> Run:
    """The run of median wall time (its counts are of that same run)."""
    return sorted(runs, key=lambda r: r.wall)[(len(runs) - 1) // 2]


def show(runs: dict[str, Run], tasks: int, repeat: int) -> None:
    print(f"P3 {tasks} no-op tasks to SLURM (rig, one node), tools run one after the other, "
          f"median of {repeat}:")
    print(f"  {'tool':<14}{'sbatch':>7}{'squeue':>7}{'sacct':>7}{'other':>7}"
          f"{'ctl RPCs':>10}{'RPC/task':>9}{'wall s':>8}"
          f"{'RPCs vs corral':>16}{'wall vs corral':>16}")
    base = runs.get("corral")
    for tool, run in runs.items():
        c = run.commands
        other = sum(v for k, v in c.items() if k not in ("sbatch", *STATUS))
        ratios = ""
        if base is not None and tool != "corral":
            ratios = (f"{run.total_rpcs / max(base.total_rpcs, 1):15.1f}x"
                      f"{run.wall / base.wall:15.1f}x")
        print(f"  {tool:<14}{c['sbatch']:>7}{c['squeue']:>7}{c['sacct']:>7}{other:>7}"
              f"{run.total_rpcs:>10}{run.total_rpcs / tasks:>9.2f}{run.wall:>8.1f}{ratios}")
    print("  details:")
    for tool, run in runs.items():
        others = ", ".join(f"{k} {v}" for k, v in sorted(run.commands.items())
                           if k not in ("sbatch", *STATUS)) or "none"
        top = ", ".join(f"{k} {v}" for k, v in run.rpcs.most_common(6))
        print(f"    {tool}: other commands: {others}; squeue lines before/after: "
              f"{run.queue_before}/{run.queue_after}")
        print(f"    {' ' * len(tool)}  RPCs: {top}")
        if run.reported:
            print(f"    {' ' * len(tool)}  launcher.counts: {run.reported}")
    print("  target: one array per MaxArraySize tasks, <= 1.5 controller RPCs/task, "
          "wall no worse than submitit")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--tools", default=",".join(TOOLS))
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--xpm-interval", type=float, default=None,
                        help="experimaestro's sacct polling interval (default: its own, 60 s)")
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--pack-workers", type=int, default=4, help=argparse.SUPPRESS)
    parser.add_argument("--pack-slots", type=int, default=2, help=argparse.SUPPRESS)
    parser.add_argument("--sleep", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--workspace", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--bin", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        report = CHILDREN[args.child](args.tasks, args.workspace, args)
        print(json.dumps(report), flush=True)
        return

    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    unknown = set(tools) - set(TOOLS)
    if unknown:
        parser.error(f"unknown tool {sorted(unknown)[0]!r}; valid: {', '.join(TOOLS)}")
    failed: dict[str, str] = {}
    runs = run_tools(args.tasks, tools, repeat=args.repeat, xpm_interval=args.xpm_interval,
                     failed=failed)
    if runs:
        show(runs, args.tasks, args.repeat)
    for tool, why in failed.items():
        print(f"  {tool}: {why}")


def needs_sacct(tool: str) -> bool:
    """Whether ``tool`` learns that its jobs ended only from ``sacct`` (experimaestro): on the
    rig's squeue mode it would wait without end."""
    return tool == "experimaestro"


def rig_has_sacct() -> bool:
    env = REPO / ".rig" / "rig.env"
    lines = env.read_text().splitlines() if env.is_file() else []
    return "CORRAL_RIG_SACCT=1" in (line.strip() for line in lines)


def unavailable() -> str | None:
    """Why P3 cannot run here (not root, no rig), or None."""
    if os.geteuid() != 0:
        return "needs root: sdiag --reset is refused to other users"
    if not (REPO / ".rig" / "rig.env").is_file():
        return "the test rig is not up: sudo bash tests/rig/rig.sh up"
    return None


def run_tools(
    tasks: int, tools: list[str], *, repeat: int = 1, xpm_interval: float | None = None,
    failed: dict[str, str] | None = None,
) -> dict[str, Run]:
    """The median run of each tool, in the order of TOOLS; a peer not installed is skipped.
    A tool that fails or passes its time limit is left out, and why goes in ``failed``."""
    reason = unavailable()
    if reason is not None:
        raise SystemExit(reason)
    environ = rig_environ()
    args = argparse.Namespace(xpm_interval=xpm_interval)
    runs: dict[str, Run] = {}
    failed = failed if failed is not None else {}
    for tool in tools:
        if tool != "corral" and importlib.util.find_spec(tool) is None:
            print(f"skipping {tool}: not installed for {sys.executable} "
                  f"(pip install -e .[bench])")
            continue
        if needs_sacct(tool) and not rig_has_sacct():
            failed[tool] = ("not run: it needs sacct, and the rig runs without accounting "
                            "(sudo bash tests/rig/rig.sh up --mode sacct)")
            print(f"skipping {tool}: {failed[tool]}", flush=True)
            continue
        print(f"running {tool}: {tasks} tasks x {repeat} (limit {time_limit(tasks):.0f} s)...",
              flush=True)
        try:
            runs[tool] = median_run([measure(tool, tasks, args, environ) for _ in range(repeat)])
        except PeerFailed as exc:
            failed[tool] = str(exc)
            print(f"  {tool}: {exc}", flush=True)
    return {t: runs[t] for t in TOOLS if t in runs}

if __name__ == "__main__":
    main()
