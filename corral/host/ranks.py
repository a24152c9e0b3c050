"""Distributed jobs: the ranks of a multi-process job, on SLURM.

A job whose resources ask more than one process in all (``nodes * tasks_per_node``) starts as
one process like any job — the *coordinator*, on the job's first node, holding the job's run
lock. It starts every rank with one ``srun`` (``python -m corral.run --rank params.json``),
or one ``torchrun`` per node that starts the node's ranks, then writes the job's marker from
what the ranks recorded: done when every rank is, else the first rank that failed, with its
reason and its log. Each rank gets the environment PyTorch's ``env://`` rendezvous and
``torchrun`` expect (``MASTER_ADDR``, ``MASTER_PORT``, ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``,
``LOCAL_WORLD_SIZE``, ``NODE_RANK``) and ``self.__rank__`` in the task. Rank 0 prints to the
job's ``stdout``/``stderr``; rank N to ``stdout.rankN``/``stderr.rankN``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from corral.core.job import Failure, FailureReason, JobState, Resources
from corral.core.task import Rank
from corral.core.workspace import state_dir

NODES_ENV = "CORRAL_NODES"
TASKS_PER_NODE_ENV = "CORRAL_TASKS_PER_NODE"
TORCHRUN_ENV = "CORRAL_TORCHRUN"
RANKS = "ranks"
"""``.corral/ranks/<rank>.json``: each rank's outcome."""
PORT_BASE = 29500


def environ_for(resources: Resources) -> dict[str, str]:
    """What a job's script exports so that its process coordinates ranks (nothing for a job
    of one process)."""
    if resources.tasks == 1 and not resources.torchrun:
        return {}
    return {
        NODES_ENV: str(resources.nodes),
        TASKS_PER_NODE_ENV: str(resources.tasks_per_node),
        TORCHRUN_ENV: "1" if resources.torchrun else "0",
    }


def distributed() -> bool:
    """Whether this job is a distributed one (its own process then coordinates its ranks)."""
    return bool(os.environ.get(NODES_ENV))


def _run(argv: list[str]) -> str:
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    return out.stdout if out.returncode == 0 else ""


def first_node_address() -> str:
    """The address of the job's first node, where rank 0 listens: its ``NodeAddr`` as the
    controller knows it, else its name."""
    nodelist = os.environ.get("SLURM_JOB_NODELIST", "")
    names = _run(["scontrol", "show", "hostnames", nodelist]).split() if nodelist else []
    first = names[0] if names else os.environ.get("SLURMD_NODENAME", "127.0.0.1")
    for field in _run(["scontrol", "show", "node", "-o", first]).split():
        if field.startswith("NodeAddr="):
            return field.split("=", 1)[1]
    return first


def master_port() -> int:
    """A port for rank 0, the same on every node, different for concurrent jobs."""
    job = os.environ.get("SLURM_JOB_ID", "0")
    return PORT_BASE + (int(job) % 20000 if job.isdigit() else 0)


def coordinate(job_dir: Path, params: str, python: str) -> tuple[Failure | None, int]:
    """Start every rank, wait for them; the job's failure (None: done) and exit code."""
    nodes = int(os.environ[NODES_ENV])
    per_node = int(os.environ[TASKS_PER_NODE_ENV])
    torchrun = os.environ.get(TORCHRUN_ENV) == "1"
    world = nodes * per_node
    results = state_dir(job_dir) / RANKS
    shutil.rmtree(results, ignore_errors=True)  # an earlier attempt's
    results.mkdir(parents=True)
    addr, port = first_node_address(), master_port()
    env = {
        **os.environ,
        "MASTER_ADDR": addr,
        "MASTER_PORT": str(port),
        "WORLD_SIZE": str(world),
        "LOCAL_WORLD_SIZE": str(per_node),
    }
    rank_argv = [python, "-m", "corral.run", "--rank", params]
    if torchrun:
        runner = str(Path(python).with_name("torchrun"))
        command = (
            f'exec {runner} --nnodes={nodes} --nproc-per-node={per_node} '
            f'--node-rank="$SLURM_NODEID" --master-addr={addr} --master-port={port} '
            f"-m corral.run --rank {params}"
        )
        argv = ["srun", "--kill-on-bad-exit=1", f"--nodes={nodes}", f"--ntasks={nodes}",
                "--ntasks-per-node=1", "bash", "-c", command]
    else:
        argv = ["srun", "--kill-on-bad-exit=1", f"--nodes={nodes}", f"--ntasks={world}",
                f"--ntasks-per-node={per_node}", *rank_argv]
    print(f"corral: {world} rank(s) on {nodes} node(s), rank 0 at {addr}:{port}", flush=True)
    proc = subprocess.Popen(argv, cwd=job_dir, env=env)
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)}

    def forward(signum: int, frame: Any) -> None:  # the ranks checkpoint, the job ends
        proc.send_signal(signum)

    for signum in previous:
        signal.signal(signum, forward)
    try:
        code = proc.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return _outcome(results, world, code)


def _outcome(results: Path, world: int, code: int) -> tuple[Failure | None, int]:
    found: dict[int, dict[str, Any]] = {}
    for rank in range(world):
        try:
            found[rank] = json.loads((results / f"{rank}.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
    if len(found) == world and all(r.get("state") == JobState.DONE.value for r in found.values()):
        return None, 0
    failed = [(r, v) for r, v in found.items() if v.get("state") == JobState.FAILED.value]
    if failed:
        # the rank that failed on its own, not one stopped because another failed
        own = [f for f in failed if f[1].get("failure", {}).get("reason") != "killed"] or failed
        rank, record = min(own, key=lambda f: (float(f[1].get("time", 0.0)), f[0]))
        failure = Failure.from_json(record.get("failure") or {})
        log = "stderr" if rank == 0 else f"stderr.rank{rank}"
        message = f"rank {rank}: {failure.message} (its log: {log})"
        return failure._replace(message=message), code or 1
    missing = [r for r in range(world) if r not in found]
    why = f"srun exited with {code}" if code else "srun ended"
    return Failure(
        FailureReason.FAILED, f"rank(s) {_ranges(missing)} ended without a result ({why})",
        exit_code=code or None,
    ), code or 1


def _ranges(ranks: list[int]) -> str:
    return ",".join(str(r) for r in ranks[:8]) + (",..." if len(ranks) > 8 else "")


def this_rank() -> Rank:
    """This rank's place in the job, from torchrun's variables or else SLURM's."""
    if os.environ.get("TORCHELASTIC_RUN_ID") or os.environ.get("GROUP_RANK"):
        rank = int(os.environ["RANK"])
        local, node = int(os.environ["LOCAL_RANK"]), int(os.environ.get("GROUP_RANK", "0"))
    else:
        rank = int(os.environ.get("SLURM_PROCID", "0"))
        local, node = int(os.environ.get("SLURM_LOCALID", "0")), int(
            os.environ.get("SLURM_NODEID", "0")
        )
    return Rank(
        rank=rank,
        local_rank=local,
        world_size=int(os.environ.get("WORLD_SIZE", "1")),
        local_world_size=int(os.environ.get("LOCAL_WORLD_SIZE", "1")),
        node_rank=node,
        master_addr=os.environ.get("MASTER_ADDR", ""),
        master_port=int(os.environ.get("MASTER_PORT", "0")),
    )


def enter(job_dir: Path) -> Rank:
    """In a rank's process: its environment (``RANK``, ...) set, its output sent to its
    log files; its place in the job."""
    rank = this_rank()
    os.environ.update(
        {
            "RANK": str(rank.rank),
            "LOCAL_RANK": str(rank.local_rank),
            "NODE_RANK": str(rank.node_rank),
            "GROUP_RANK": str(rank.node_rank),
        }
    )
    suffix = "" if rank.rank == 0 else f".rank{rank.rank}"
    for fd, name in ((1, "stdout"), (2, "stderr")):
        sys.stdout.flush() if fd == 1 else sys.stderr.flush()
        log = os.open(job_dir / f"{name}{suffix}", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(log, fd)
        os.close(log)
    return rank


def record(job_dir: Path, rank: Rank, failure: Failure | None) -> None:
    """Write this rank's outcome for the coordinator."""
    data: dict[str, Any] = {"state": JobState.DONE.value if failure is None else "failed",
                            "time": time.time()}
    if failure is not None:
        data["failure"] = failure.to_json()
    path = state_dir(job_dir) / RANKS / f"{rank.rank}.json"
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    os.replace(tmp, path)
