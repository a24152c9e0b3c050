"""Tasks used by the execution tests; every execution appends a line to a log file."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Annotated, Any

from corral import Config, Meta, Param, SubmitHook, Task, pathgenerator


def append_log(log: Path, **record: Any) -> None:
    """Append one JSON line (a single small O_APPEND write: safe across processes)."""
    line = json.dumps(record) + "\n"
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def read_log(log: Path) -> list[dict[str, Any]]:
    """Every record of a log file."""
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line]


class Record(Task):
    """Logs its start and end; optionally sleeps in between."""

    name: Param[str]
    sleep: Param[float] = 0.0
    log: Meta[Path]
    output: Annotated[Path, pathgenerator("out/result.txt")]

    def execute(self) -> None:
        start = time.time()
        time.sleep(self.sleep)
        self.output.write_text(self.name)
        append_log(
            self.log,
            name=self.name,
            start=start,
            end=time.time(),
            pid=os.getpid(),
            cuda=os.environ.get("CUDA_VISIBLE_DEVICES"),
            cwd=os.getcwd(),
            taskdir=str(self.__taskdir__),
        )


class After(Task):
    """Runs after ``before`` (a task used as a param is a dependency)."""

    before: Param[Record]
    log: Meta[Path]

    def execute(self) -> None:
        append_log(self.log, name="after", start=time.time(),
                   saw=self.before.output.read_text())


class Fail(Task):
    """Fails the way it is told to."""

    how: Param[str]
    log: Meta[Path]

    def execute(self) -> None:
        append_log(self.log, name=f"fail-{self.how}")
        if self.how == "raise":
            raise ValueError("bad value 42")
        if self.how == "exit":
            sys.exit(3)
        if self.how == "sigkill":
            os.kill(os.getpid(), signal.SIGKILL)
        if self.how == "sigterm":
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)


class Misbehave(Record):
    """Fails the way it is told to (``how``) until the file ``fixed`` exists, then runs as a
    Record: a re-run after creating ``fixed`` shows which jobs run again."""

    how: Param[str]
    fixed: Meta[str]

    def execute(self) -> None:
        if not Path(self.fixed).exists():
            append_log(self.log, name=f"misbehave-{self.how}")
            if self.how == "oom":
                block = bytearray(400 * 1024 * 1024)
                for i in range(0, len(block), 4096):
                    block[i] = 1
            elif self.how == "sigkill":
                os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(600)  # "timeout", "scancel": until ended from outside
        super().execute()


class Echo(Task):
    """Writes its param and an environment variable back, to check they round-trip."""

    text: Param[str]
    variable: Meta[str] = "CORRAL_TEST_VALUE"

    def execute(self) -> None:
        Path("echo.json").write_text(
            json.dumps({"text": self.text, "env": os.environ.get(self.variable)})
        )


class Sub(Config):
    """A sub-config, to check ``__maintaskdir__``."""

    value: Param[int] = 1


class WithSub(Task):
    sub: Param[Sub]

    def execute(self) -> None:
        Path("maintaskdir.txt").write_text(str(self.sub.__maintaskdir__))


class Leaf(Config):
    """A sub-config of a sub-config, with a generated path of its own."""

    label: Param[str]
    file: Annotated[Path, pathgenerator("leaf/a/b/leaf.txt")]


class Part(Config):
    """A sub-config with a generated path in a subdirectory."""

    label: Param[str]
    leaves: Param[list[Leaf]] = []
    file: Annotated[Path, pathgenerator("sub/deep/file.txt")]


class WithParts(Task):
    """Writes to the generated paths of its sub-configs; records their ``__maintaskdir__``."""

    part: Param[Part]
    before: Param[Record | None] = None

    def execute(self) -> None:
        seen = {}
        for config in (self.part, *self.part.leaves):
            config.file.write_text(config.label)
            seen[config.label] = str(config.__maintaskdir__)
        if self.before is not None:
            seen["before"] = str(self.before.__maintaskdir__)
        Path("maintaskdirs.json").write_text(json.dumps(seen))


class Lists(Task):
    """Writes its list and dict params back, and whether they are read-only in the job."""

    values: Param[list[int]]
    table: Param[dict[str, list[str]]]

    def execute(self) -> None:
        try:
            self.table["a"].append("changed in the job")
            refused = ""
        except Exception as exc:
            refused = str(exc)
        Path("lists.json").write_text(
            json.dumps({"values": self.values, "table": self.table, "refused": refused})
        )


class one_gpu(SubmitHook):
    """Submit hook: the job needs one GPU."""

    def process(self, job, launcher):
        job.resources.gpus = 1


@one_gpu()
class GpuRecord(Record):
    """A Record that needs a GPU."""


class Talk(Task):
    """Prints ``lines`` lines, 0.2 s apart."""

    lines: Param[int]

    def execute(self) -> None:
        for i in range(self.lines):
            print(f"line {i}", flush=True)
            time.sleep(0.2)


class Waiter(Task):
    """Waits until ``flag`` exists; ``inputs`` are its dependencies."""

    flag: Meta[str]
    inputs: Param[list[Record]] = []

    def execute(self) -> None:
        while not Path(self.flag).exists():
            time.sleep(0.05)
