"""Quickstart: a small learning-rate sweep on the local launcher.

    python examples/quickstart/experiment.py [WORKSPACE]

Run it twice: the second run finds every job done and runs nothing.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tasks import Data, Train  # a module next to this script

from corral import Param, Task, experiment, tag


class Evaluate(Task):
    """Mean squared error of a trained model on held-out data (a dependency of Train)."""

    model: Param[Train]
    test: Param[Data]

    def execute(self) -> None:
        w = json.loads(self.model.weights.read_text())
        samples = self.test.samples()
        mse = sum((w["a"] * x + w["b"] - y) ** 2 for x, y in samples) / len(samples)
        Path("mse.txt").write_text(f"{mse:.6f}")
        print(f"mse={mse:.6f} tags={self.__tags__}")


if __name__ == "__main__":
    workspace = sys.argv[1] if len(sys.argv) > 1 else "workspace"
    evaluations = []
    with experiment(workspace, "quickstart") as xp:
        for lr in (0.01, 0.05, 0.2):
            for epochs in (20, 100):
                model = Train(data=Data(), lr=tag(lr), epochs=tag(epochs))
                model.submit()
                evaluation = Evaluate(model=model, test=Data(seed=1))
                evaluation.submit()
                evaluations.append(evaluation)
    if xp.dry_run:  # `corral dry-run`: nothing ran, there are no results to show
        sys.exit(0)
    print(f"{'lr':>6} {'epochs':>6} {'mse':>10}  job directory")
    for e in evaluations:
        tags = e.__tags__
        mse = (e.__taskdir__ / "mse.txt").read_text()
        print(f"{tags['lr']:>6} {tags['epochs']:>6} {mse:>10}  {e.__taskdir__}")
