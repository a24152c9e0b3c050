"""Tasks the launcher conformance suite submits (importable in any job process)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated

from corral import Param, Task, pathgenerator


class Sleep(Task):
    """Sleeps, then writes ``output``."""

    seconds: Param[float] = 0.0
    token: Param[str] = ""
    output: Annotated[Path, pathgenerator("output.txt")]

    def execute(self) -> None:
        time.sleep(self.seconds)
        self.output.write_text(f"slept {self.seconds} pid {os.getpid()}")


class Raise(Task):
    """Fails with an exception whose last line the failure reason must carry."""

    message: Param[str] = "conformance failure"

    def execute(self) -> None:
        raise RuntimeError(self.message)


class Env(Task):
    """Writes an environment variable to ``env.txt``."""

    name: Param[str]

    def execute(self) -> None:
        Path("env.txt").write_text(os.environ.get(self.name, "<unset>"))


class ReadAfter(Task):
    """Depends on a ``Sleep`` task (a task used as a param) and reads its output."""

    before: Param[Sleep]

    def execute(self) -> None:
        Path("read.txt").write_text(self.before.output.read_text())
