"""A task that writes back the hostile values it was given (imported by job processes)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from corral import Job, Launcher, Meta, Param, SubmitHook, Task

NASTY = "a b 'c' \"d\" $(touch PWNED) `touch PWNED`; touch PWNED\nü ✓ \\ $HOME"

class hostile_env(SubmitHook):  # a class decorator, like the seed's needs_java
    def spec(self) -> str:
        return "hostile"

    def process(self, job: Job, launcher: Launcher) -> None:
        job.environ["HOSTILE"] = NASTY


@hostile_env()
class Mirror(Task):
    """Writes back what it was given."""

    text: Param[str]
    other: Param[str]
    note: Meta[str] = ""

    def execute(self) -> None:
        Path("mirror.json").write_text(json.dumps({
            "text": self.text, "other": self.other, "note": self.note,
            "tags": self.__tags__, "env": os.environ["HOSTILE"],
            "pwned": Path("PWNED").exists() or Path(os.environ["HOME"], "PWNED").exists(),
        }))


