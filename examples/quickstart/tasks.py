"""Tasks of the quickstart: fit a tiny linear model by gradient descent, then evaluate it.

Pure Python, so the example needs nothing but corral.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Annotated

from corral import Config, Param, Task, pathgenerator


class Data(Config):
    """A synthetic regression problem y = 3x - 1 + noise."""

    size: Param[int] = 200
    noise: Param[float] = 0.1
    seed: Param[int] = 0

    def samples(self) -> list[tuple[float, float]]:
        rng = random.Random(self.seed)
        xs = [rng.uniform(-1, 1) for _ in range(self.size)]
        return [(x, 3 * x - 1 + rng.gauss(0, self.noise)) for x in xs]


class Train(Task):
    """Fits y = a x + b by gradient descent."""

    data: Param[Data]
    lr: Param[float] = 0.1
    epochs: Param[int] = 50
    weights: Annotated[Path, pathgenerator("weights.json")]

    def execute(self) -> None:
        a = b = 0.0
        samples = self.data.samples()
        for _ in range(self.epochs):
            ga = sum((a * x + b - y) * x for x, y in samples) / len(samples)
            gb = sum((a * x + b - y) for x, y in samples) / len(samples)
            a, b = a - self.lr * 2 * ga, b - self.lr * 2 * gb
        self.weights.write_text(json.dumps({"a": a, "b": b}))
        print(f"trained: a={a:.3f} b={b:.3f}")
