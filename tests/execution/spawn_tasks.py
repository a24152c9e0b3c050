"""Tasks of the cancel tests: a job leaving a child in its process group."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from corral import Param, Task


class SpawnAndSleep(Task):
    """Starts a child that ignores SIGTERM (same process group), writes its pid, sleeps."""

    token: Param[str]
    seconds: Param[float] = 120.0

    def execute(self) -> None:
        child = subprocess.Popen(["sh", "-c", "trap '' TERM; exec sleep 600"])
        Path("child.pid").write_text(str(child.pid))
        time.sleep(self.seconds)
