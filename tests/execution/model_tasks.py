"""Tasks with nested configs, init tasks and cleanup on cancel (imported by job processes)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Optional

from corral import Config, LightweightTask, Meta, Param, Task, TaskCancelled, pathgenerator


class Encoder(Config):
    size: Param[int] = 4
    vocab: Annotated[Path, pathgenerator("vocab.txt")]


class Model(Config):
    encoder: Param[Encoder]
    decoder: Param[Optional[Encoder]] = None
    weights: Annotated[Path, pathgenerator("weights.pt")]


class Train(Task):
    """Writes every generated path of its tree, and the paths it saw, to ``seen.json``."""

    model: Param[Model]
    extra: Param[list[Encoder]] = []
    seed: Param[int] = 0

    def execute(self) -> None:
        paths = {
            "weights": self.model.weights,
            "vocab": self.model.encoder.vocab,
            **{f"extra{i}": e.vocab for i, e in enumerate(self.extra)},
        }
        if self.model.decoder is not None:
            paths["decoder"] = self.model.decoder.vocab
        for name, path in paths.items():
            path.write_text(name)
        Path("seen.json").write_text(json.dumps({k: str(v) for k, v in paths.items()}))


class Score(Task):
    """Reads the weights the model of a finished Train wrote."""

    train: Param[Train]

    def execute(self) -> None:
        Path("score.txt").write_text(self.train.model.weights.read_text())


class Warmup(LightweightTask):
    """Runs in the job before its task: appends to ``order.log`` in the job directory."""

    step: Param[int]
    note: Annotated[Path, pathgenerator("note.txt")]

    def execute(self) -> None:
        self.note.write_text(f"warmup {self.step}")
        with open("order.log", "a") as f:
            f.write(f"warmup {self.step}\n")


class Main(Task):
    seed: Param[int] = 0

    def execute(self) -> None:
        with open("order.log", "a") as f:
            f.write("main\n")


class CleansUp(Task):
    """Sleeps until cancelled; on TaskCancelled takes ``cleanup`` seconds to write
    ``cleaned.txt``, then re-raises (or, with ``swallow``, returns)."""

    token: Param[str]
    cleanup: Param[float] = 0.5
    swallow: Param[bool] = False

    def execute(self) -> None:
        Path("started").write_text("yes")
        try:
            time.sleep(120)
        except TaskCancelled as exc:
            time.sleep(self.cleanup)
            Path("cleaned.txt").write_text(f"{exc.signal}: {exc}")
            if not self.swallow:
                raise


class Append(Task):
    """Sleeps ``seconds``, then appends a line to ``<out>/<its identifier>``: a job run twice
    leaves two lines."""

    token: Param[str]
    seconds: Param[float] = 0.0
    fail: Param[bool] = False
    out: Meta[str] = ""

    def execute(self) -> None:
        Path("started").write_text("yes")
        time.sleep(self.seconds)
        if self.fail:
            raise ValueError(f"{self.token} fails")
        with open(Path(self.out) / self.__taskdir__.name, "a") as f:
            f.write(f"{self.token}\n")


class AfterAppend(Task):
    """Depends on an Append; records that its line was there when it ran."""

    before: Param[Append]
    out: Meta[str] = ""

    def execute(self) -> None:
        seen = (Path(self.out) / self.before.__taskdir__.name).read_text()
        Path("seen.txt").write_text(seen)
