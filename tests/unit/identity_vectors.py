"""Configs whose identifiers are pinned in ``tests/data/identity_vectors.json``.

Every config class has an explicit id, so the vectors do not depend on where this file lives
(the enum is hashed by its qualified name, ``tests.unit.identity_vectors.Shade``).
Regenerate (only together with a ``HASH_VERSION`` bump) with::

    python -m tests.unit.identity_vectors --write
"""

from __future__ import annotations

import enum
import json
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

from corral import (
    Config,
    Constant,
    LightweightTask,
    Meta,
    Param,
    Task,
    field,
    identifier,
    partial_identifier,
    pathgenerator,
    setmeta,
    tag,
)
from corral.core.identity import HASH_VERSION
from corral.core.task import Dep, attach_init_tasks

VECTORS_FILE = Path(__file__).parent.parent / "data" / "identity_vectors.json"


class Shade(enum.Enum):  # hashed by its qualified name: tests.unit.identity_vectors.Shade
    DARK = "dark"
    LIGHT = "light"


class Empty(Config, id="golden.Empty"):
    pass


class Value(Config, id="golden.Value"):
    v: Param[Any]


class Num(Config, id="golden.Num"):
    x: Param[float]


class Defaults(Config, id="golden.Defaults"):
    a: Param[int] = 1
    b: Param[str] = "b"


class WithMeta(Config, id="golden.WithMeta"):
    a: Param[int]
    m: Meta[str] = "meta"


class Versioned(Config, id="golden.Versioned"):
    a: Param[int]
    version: Constant[int] = 3


class Inner(Config, id="golden.Inner"):
    n: Param[int]


class Outer(Config, id="golden.Outer"):
    inner: Param[Inner]
    others: Param[list[Inner]] = []
    named: Param[dict[str, Inner]] = {}


class PathHolder(Config, id="golden.PathHolder"):
    path: Param[Path]


class Producer(Task, id="golden.Producer"):
    seed: Param[int]
    out: Annotated[Path, pathgenerator("out/data.tsv")]

    def task_outputs(self, dep: Dep) -> Any:
        return dep(Inner(n=self.seed))


class Maybe(Config, id="golden.Maybe"):
    x: Param[Optional[int]]
    shade: Param[Shade] = Shade.DARK


class Sets(Config, id="golden.Sets"):
    s: Param[set[int]] = set()
    f: Param[frozenset[str]] = frozenset()


class Holder(Config, id="golden.Holder"):
    inner: Param[Inner]
    n: Param[int] = 0


class Warm(LightweightTask, id="golden.Warm"):
    steps: Param[int]


class Run(Task, id="golden.Run"):
    lr: Param[float] = 0.1
    epochs: Param[int] = field(default=10, group="schedule")
    seed: Param[int] = field(default=0, group="schedule")


def _with_init(task: Task, *init: LightweightTask) -> Task:
    attach_init_tasks(task, init)
    return task


def build() -> dict[str, Config]:
    """The named configs of the golden vectors."""
    producer = Producer(seed=7)
    return {
        "empty": Empty(),
        "int-1": Value(v=1),
        "int-0": Value(v=0),
        "int-negative": Value(v=-42),
        "int-big": Value(v=2**100),
        "bool-true": Value(v=True),
        "bool-false": Value(v=False),
        "none": Value(v=None),
        "float-1.0": Num(x=1.0),
        "float-from-int-1": Num(x=1),
        "float-negative-zero": Num(x=-0.0),
        "float-nan": Num(x=float("nan")),
        "float-inf": Num(x=float("inf")),
        "float-third": Num(x=1 / 3),
        "str-empty": Value(v=""),
        "str-unicode": Value(v="héllo ✓"),
        "str-shell": Value(v="a b 'c' \"d\" $(rm -rf /)\nnext"),
        "path-absolute": PathHolder(path="/data/set"),
        "path-unnormalized": PathHolder(path="/data//./set/"),
        "path-relative": PathHolder(path="data/set"),
        "enum": Maybe(x=1, shade=Shade.LIGHT),
        "optional-none": Maybe(),
        "list-empty": Value(v=[]),
        "list": Value(v=[1, 2, 3]),
        "tuple": Value(v=(1, 2, 3)),
        "dict": Value(v={"b": 1, "a": [True, None]}),
        "dict-reordered": Value(v={"a": [True, None], "b": 1}),
        "defaults-all": Defaults(),
        "defaults-explicit-equal": Defaults(a=1, b="b"),
        "defaults-changed": Defaults(a=2),
        "meta-excluded": WithMeta(a=1, m="other"),
        "constant": Versioned(a=1),
        "nested": Outer(inner=Inner(n=1)),
        "nested-list-dict": Outer(inner=Inner(n=1), others=[Inner(n=2)], named={"x": Inner(n=3)}),
        "tagged": Value(v=tag(5)),
        "task": producer,
        "generated-path-used": PathHolder(path=producer.out),
        "dep-marked": producer.task_outputs(Dep(producer)),
        "config-in-any": Value(v={"m": Inner(n=1), "l": (1.5, "s")}),
        "set": Sets(s={3, 1, 2}, f={"b", "a"}),
        "set-reordered": Sets(s={2, 3, 1}, f=frozenset({"a", "b"})),
        "set-empty-is-default": Sets(s=set()),
        "set-of-configs": Value(v={Inner(n=1), Inner(n=2)}),
        "setmeta-excluded": Holder(inner=setmeta(Inner(n=5)), n=1),
        "setmeta-in-containers": Outer(
            inner=Inner(n=1),
            others=[Inner(n=2), setmeta(Inner(n=3))],
            named={"kept": Inner(n=4), "left-out": setmeta(Inner(n=5))},
        ),
        "init-tasks": _with_init(Run(), Warm(steps=1), Warm(steps=2)),
        "init-tasks-reordered": _with_init(Run(), Warm(steps=2), Warm(steps=1)),
    }


def partials() -> dict[str, str]:
    """Partial identifiers (``partial_identifier``) pinned beside the vectors."""
    return {
        "run-without-epochs": partial_identifier(Run(epochs=20), ["epochs"]),
        "run-without-epochs-other-value": partial_identifier(Run(epochs=50), ["epochs"]),
        "run-without-schedule": partial_identifier(Run(lr=0.5, epochs=3, seed=4), ["schedule"]),
        "run-without-lr": partial_identifier(Run(lr=0.5), ["lr"]),
    }


def compute() -> dict[str, str]:
    """The identifier of every vector."""
    return {name: identifier(config) for name, config in build().items()}


if __name__ == "__main__":
    if "--write" not in sys.argv:
        print(json.dumps({"vectors": compute(), "partials": partials()}, indent=2))
        sys.exit(0)
    data = {"hash_version": HASH_VERSION, "vectors": compute(), "partials": partials()}
    VECTORS_FILE.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {len(data['vectors'])} vectors to {VECTORS_FILE}")
