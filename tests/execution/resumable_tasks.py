"""Resumable tasks for the time-limit tests (imported by the job processes)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from corral import Meta, Param, ResumableTask


class Steps(ResumableTask):
    """Counts ``steps`` steps, one per ``pause`` seconds, checkpointing each in the job
    directory; ends the attempt when ``stop_after`` steps were made in it, or when warned of
    its time limit. Each attempt appends what it saw to ``log``."""

    steps: Param[int]
    pause: Param[float] = 0.0
    stop_after: Param[int] = 0
    log: Meta[str]

    def execute(self) -> None:
        checkpoint = Path("checkpoint")
        done = int(checkpoint.read_text()) if checkpoint.exists() else 0
        record = {"resumed_at": done, "remaining": self.remaining_time()}
        made = 0
        while done < self.steps:
            time.sleep(self.pause)
            done += 1
            made += 1
            checkpoint.write_text(str(done))
            if self.time_is_up() or (self.stop_after and made >= self.stop_after):
                record["stopped_at"] = done
                record["warned"] = self.time_is_up()
                _append(self.log, record)
                self.resume_later()
        record["finished"] = done
        _append(self.log, record)


class UntilWarned(ResumableTask):
    """First attempt: works until SLURM's warning signal (or 5 s before the limit), then
    checkpoints; a later attempt finds the checkpoint and finishes."""

    warning = 50
    log: Meta[str]

    def execute(self) -> None:
        checkpoint = Path("checkpoint")
        if checkpoint.exists():
            _append(self.log, {"attempt": 2, "resumed": checkpoint.read_text()})
            return
        left = self.remaining_time()
        while not self.warning_received() and (left is None or left > 5):
            time.sleep(0.5)
            left = self.remaining_time()
        checkpoint.write_text("saved")
        _append(self.log, {"attempt": 1, "warned": self.warning_received(), "left": left})
        self.resume_later()


def _append(log: str, record: dict[str, object]) -> None:
    with open(log, "a") as f:
        f.write(json.dumps(record) + "\n")
