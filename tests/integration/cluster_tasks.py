"""Tasks of the multi-node cluster tests: GPUs as SLURM gives them, ranks that really talk to
each other over TCP, a task that checkpoints when it is preempted."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from corral import Meta, Param, ResumableTask, Task
from tests.execution.tasks import append_log


def node() -> str:
    """The SLURM node this process runs on (every namespace shares the machine's hostname)."""
    return os.environ.get("SLURMD_NODENAME", "?")


class GpuInfo(Task):
    """Logs the node and the GPUs SLURM gave the job."""

    name: Param[str]
    sleep: Param[float] = 0.0
    log: Meta[Path]

    def execute(self) -> None:
        start = time.time()
        time.sleep(self.sleep)
        append_log(
            self.log, name=self.name, node=node(), start=start, end=time.time(),
            cuda=os.environ.get("CUDA_VISIBLE_DEVICES"), job_gpus=os.environ.get("SLURM_JOB_GPUS"),
        )


def _connect(addr: str, port: int, timeout: float = 30.0) -> socket.socket:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return socket.create_connection((addr, port), timeout=5)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


class AllReduce(Task):
    """Each rank sends its value to rank 0 over TCP; rank 0 sums them and sends the sum back:
    each rank writes what it learned to ``result.rank<N>`` (JSON)."""

    seed: Param[int]
    fail_rank: Param[int] = -1

    def execute(self) -> None:
        rank = self.__rank__
        value = self.seed * 100 + rank.rank
        if rank.rank == self.fail_rank:
            raise RuntimeError(f"rank {rank.rank} gives up")
        environ = {k: os.environ.get(k) for k in (
            "MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK", "LOCAL_RANK",
            "LOCAL_WORLD_SIZE", "NODE_RANK")}
        peers: list[str] = []
        if rank.rank == 0:
            server = socket.create_server((rank.master_addr, rank.master_port))
            server.settimeout(60)
            conns = []
            total = value
            for _ in range(rank.world_size - 1):
                conn, (peer, _) = server.accept()
                total += int(conn.makefile().readline())
                peers.append(peer)
                conns.append(conn)
            for conn in conns:
                conn.sendall(f"{total}\n".encode())
                conn.close()
            server.close()
        else:
            with _connect(rank.master_addr, rank.master_port) as conn:
                conn.sendall(f"{value}\n".encode())
                total = int(conn.makefile().readline())
        print(f"rank {rank.rank} of {rank.world_size} on {node()}: total {total}")
        Path(f"result.rank{rank.rank}").write_text(json.dumps({
            "rank": rank.rank, "local_rank": rank.local_rank, "world": rank.world_size,
            "node_rank": rank.node_rank, "node": node(), "total": total, "peers": peers,
            "master": [rank.master_addr, rank.master_port], "environ": environ,
        }))


class Checkpointed(ResumableTask):
    """Counts to ``steps``, one step per ``step_seconds``, saving each step; stops to resume
    when told its time is up (preemption's SIGTERM). Each attempt appends to ``log``."""

    steps: Param[int]
    step_seconds: Param[float] = 0.5
    log: Meta[Path]

    def execute(self) -> None:
        checkpoint = Path("checkpoint")
        start = int(checkpoint.read_text()) if checkpoint.exists() else 0
        append_log(self.log, event="start", step=start, node=node(), time=time.time())
        for step in range(start, self.steps):
            time.sleep(self.step_seconds)
            checkpoint.write_text(str(step + 1))
            if self.time_is_up():
                append_log(self.log, event="checkpoint", step=step + 1, time=time.time())
                self.resume_later("preempted: resumes from its checkpoint")
        append_log(self.log, event="done", step=self.steps, time=time.time())


class Sleepy(Task):
    """Sleeps, logging each attempt's start and end (a task that knows nothing of signals)."""

    name: Param[str]
    sleep: Param[float]
    log: Meta[Path]

    def execute(self) -> None:
        append_log(self.log, name=self.name, event="start", node=node(), time=time.time())
        print(f"{self.name} starts on {node()}", flush=True)
        time.sleep(self.sleep)
        append_log(self.log, name=self.name, event="end", node=node(), time=time.time())


class TorchAllReduce(Task):
    """``torch.distributed`` over gloo, from the environment torchrun gave the process: an
    all-reduce of each rank's number, written to ``torch.rank<N>`` (JSON)."""

    seed: Param[int]

    def execute(self) -> None:
        import torch
        import torch.distributed as dist

        # gloo advertises the address of the machine's name, the same on every namespace:
        # use the node's own interface instead
        os.environ["GLOO_SOCKET_IFNAME"] = next(
            i for i in sorted(os.listdir("/sys/class/net")) if i != "lo"
        )
        dist.init_process_group("gloo")
        rank = self.__rank__
        value = torch.tensor([float(self.seed * 100 + dist.get_rank())])
        dist.all_reduce(value)
        Path(f"torch.rank{dist.get_rank()}").write_text(json.dumps({
            "rank": dist.get_rank(), "world": dist.get_world_size(), "total": value.item(),
            "corral_rank": rank.rank, "local_rank": rank.local_rank, "node": node(),
            "node_rank": rank.node_rank, "torchrun": bool(os.environ.get("TORCHELASTIC_RUN_ID")),
        }))
        dist.destroy_process_group()
