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
