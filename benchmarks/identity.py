"""P1: build a 10,000-config grid and compute every identifier.

Each config is a task with 7 params, one of them a nested config with 3 params of its own.
Prints the median over several repetitions (fresh objects each time, so nothing is cached).

    python -m benchmarks.identity [--size 10000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
from pathlib import Path

from corral import Config, Param, Task, identifier


class Encoder(Config):
    layers: Param[int] = 2
    hidden: Param[int] = 128
    dropout: Param[float] = 0.1


class Train(Task):
    encoder: Param[Encoder]
    lr: Param[float] = 1e-3
    batch_size: Param[int] = 32
    epochs: Param[int] = 10
    optimizer: Param[str] = "adam"
    data: Param[Path] = Path("/data/train")
    seed: Param[int] = 0

    def execute(self) -> None:
        pass


def grid(size: int) -> list[Train]:
    """``size`` distinct configs over a grid of learning rates, sizes and seeds."""
    lrs = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2]
    hiddens = [64, 128, 256, 512]
    layers = [1, 2, 3, 4, 6]
    seeds = range(-(-size // (len(lrs) * len(hiddens) * len(layers))))
    combos = itertools.product(seeds, lrs, hiddens, layers)
    return [
        Train(encoder=Encoder(hidden=h, layers=n, dropout=0.2), lr=lr, seed=s, batch_size=64)
        for s, lr, h, n in itertools.islice(combos, size)
    ]


def run_once(size: int) -> float:
    start = time.perf_counter()
    ids = {identifier(t) for t in grid(size)}
    elapsed = time.perf_counter() - start
    assert len(ids) == size
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    times = [run_once(args.size) for _ in range(args.repeat)]
    median = statistics.median(times)
    print(
        f"P1 corral: build + identify {args.size} configs: median {median * 1000:.0f} ms "
        f"({median / args.size * 1e6:.1f} us/config) over {args.repeat} runs "
        f"[min {min(times) * 1000:.0f} ms, max {max(times) * 1000:.0f} ms]"
    )


if __name__ == "__main__":
    main()
