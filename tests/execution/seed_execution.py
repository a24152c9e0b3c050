"""Seed tasks completed with an execute(), in a module that imports only corral (so that a
job on a remote host, without the test dependencies, can import it)."""

from __future__ import annotations

import time
from pathlib import Path

from corral import Param, Task
from tests.execution.tasks import append_log
from tests.seed_tasks import Dataset, ModelLearn, RandomFold


class WritingModelLearn(ModelLearn):
    """The seed's ModelLearn, with an execute() that writes its parameters."""

    def execute(self):
        self.parameters.write_bytes(b"weights of " + str(self.model.hidden).encode())


class SampledFold(RandomFold):
    """The seed's RandomFold (whose task_outputs is inherited), with an execute()."""

    log: Param[str]

    def execute(self):
        time.sleep(0.3)
        self.topics.write_text("q1\tsampled\n")
        append_log(Path(self.log), name="fold", end=time.time())


class Evaluate(Task):
    dataset: Param[Dataset]
    log: Param[str]

    def execute(self):
        append_log(
            Path(self.log),
            name="evaluate",
            start=time.time(),
            topics=self.dataset.topics.path.read_text(),
            documents=str(self.dataset.documents.path),
        )
