"""P1 with experimaestro: the grid of ``benchmarks.identity``, identifiers from experimaestro.

Same classes, same params, same defaults ignored in the identifier (as corral does).
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path

from experimaestro import Config, Param, Task, field


class XpmEncoder(Config):
    layers: Param[int] = field(default=2, ignore_default=True)
    hidden: Param[int] = field(default=128, ignore_default=True)
    dropout: Param[float] = field(default=0.1, ignore_default=True)


class XpmTrain(Task):
    encoder: Param[XpmEncoder]
    lr: Param[float] = field(default=1e-3, ignore_default=True)
    batch_size: Param[int] = field(default=32, ignore_default=True)
    epochs: Param[int] = field(default=10, ignore_default=True)
    optimizer: Param[str] = field(default="adam", ignore_default=True)
    data: Param[Path] = field(default=Path("/data/train"), ignore_default=True)
    seed: Param[int] = field(default=0, ignore_default=True)

    def execute(self) -> None:
        pass


def grid(size: int) -> list[XpmTrain]:
    """``size`` distinct configs, the same grid as ``benchmarks.identity.grid``."""
    lrs = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2]
    hiddens = [64, 128, 256, 512]
    layers = [1, 2, 3, 4, 6]
    seeds = range(-(-size // (len(lrs) * len(hiddens) * len(layers))))
    combos = itertools.product(seeds, lrs, hiddens, layers)
    return [
        XpmTrain.C(
            encoder=XpmEncoder.C(hidden=h, layers=n, dropout=0.2), lr=lr, seed=s, batch_size=64
        )
        for s, lr, h, n in itertools.islice(combos, size)
    ]


def run_once(size: int) -> float:
    """Seconds to build the grid and take every identifier."""
    start = time.perf_counter()
    ids = {t.__xpm__.identifier.all for t in grid(size)}
    elapsed = time.perf_counter() - start
    assert len(ids) == size
    return elapsed
