"""Where the generated paths of a task's configs are: which task owns each config.

A task's own ``pathgenerator`` fields are ``<job directory>/<relpath>``. A config nested in
the task (not through another task) belongs to that task: its generated paths are
``<job directory>/out/<position>/<relpath>``, where the position is the config's place in
the tree (``out/model/encoder/weights.pt``; list items by index, dict items by key), so two
nested configs never share a path. The same rule runs in the client, when the task is
submitted, and in the job, when its tree is rebuilt: both see the same paths.

A config with generated paths belongs to one task: used directly by two different tasks, it
is an error naming both. A ``dep``-marked config is its producer's output: its paths are
under the producer's ``out/_produced/<its identifier>``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import Any

from corral.core.classinfo import class_info
from corral.core.config import Config
from corral.errors import ConfigError

OUT = "out"
"""The subdirectory of a job directory that holds its nested configs' generated paths."""

PRODUCED = "_produced"
"""Under :data:`OUT`: the generated paths of ``dep``-marked outputs, by their identity."""

INIT = "init"
"""The position of the task's init tasks (``init/0``, ``init/1``...)."""


def _segment(key: str | int) -> str:
    """A path segment for a field name, list index or dict key (never ``..`` or ``/``)."""
    text = str(key)
    text = text.replace("%", "%25").replace("/", "%2F")
    if text in ("", ".", ".."):
        text = text.replace(".", "%2E") or "%00"
    return text


def _inside(value: Any, where: tuple[str, ...]) -> Iterator[tuple[Config, tuple[str, ...]]]:
    if isinstance(value, Config):
        yield value, where
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            yield from _inside(v, (*where, str(i)))
    elif isinstance(value, frozenset | set):
        from corral.core.identity import encode

        for i, v in enumerate(sorted(value, key=encode)):  # the order params.json keeps
            yield from _inside(v, (*where, str(i)))
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _inside(v, (*where, _segment(k)))


def positions(task: Config) -> list[tuple[Config, tuple[str, ...]]]:
    """The configs ``task`` owns, each at its first position (breadth first, fields in
    declaration order): the configs inside its fields and init tasks, not descending into
    another task nor into a config another task produced (``dep``)."""
    from corral.core.task import Task

    found: list[tuple[Config, tuple[str, ...]]] = []
    seen = {id(task)}
    queue: deque[tuple[Config, tuple[str, ...]]] = deque([(task, ())])
    while queue:
        config, where = queue.popleft()
        d = config.__dict__
        nested: list[tuple[Config, tuple[str, ...]]] = []
        for name in class_info(type(config)).value_fields:
            if name in d:
                nested.extend(_inside(d[name], (*where, _segment(name))))
        if config is task:
            for i, init in enumerate(d.get("_corral_init", ())):
                nested.append((init, (INIT, str(i))))
        for child, at in nested:
            if id(child) in seen or isinstance(child, Task):
                continue
            producer = child.__dict__.get("_corral_producer")
            if producer is not None and producer is not task:
                continue
            seen.add(id(child))
            found.append((child, at))
            queue.append((child, at))
    return found


def _name(task: Config) -> str:
    from corral.core.identity import identifier

    return f"{type(task).__qualname__} {identifier(task)[:12]}"


def _same_job(a: Config, b: Config) -> bool:
    from corral.core.identity import identifier, type_id

    return a is b or (type_id(a) == type_id(b) and identifier(a) == identifier(b))


def check_claims(task: Config) -> None:
    """Refuse a config with generated paths that another task already owns."""
    for config, where in positions(task):
        owner = config.__dict__.get("_corral_owner")
        if owner is None or _same_job(owner, task) or not class_info(type(config)).generated:
            continue
        theirs = "/".join(config.__dict__["_corral_position"])
        raise ConfigError(
            f"{type(config).__qualname__} has generated paths and is used by two tasks: "
            f"{_name(owner)} (at {theirs}) and {_name(task)} (at {'/'.join(where)}); give "
            "each task its own copy (copyconfig()), or pass the first task's path"
        )


def claim(task: Config, *, first_wins: bool = False) -> list[Config]:
    """Make ``task`` the owner of the configs it holds; returns them. ``first_wins`` (in a
    job) keeps an owner already set, where the client would have refused the tree."""
    owned = []
    for config, where in positions(task):
        d = config.__dict__
        if first_wins and d.get("_corral_owner") is not None:
            continue
        d["_corral_owner"] = task
        d["_corral_position"] = where
        owned.append(config)
    return owned


def base_of(config: Config) -> tuple[Config, PurePosixPath] | None:
    """The task whose job directory holds ``config``'s generated paths, and the directory
    under it; None while that is not known (the task was not submitted)."""
    from corral.core.task import Task

    d = config.__dict__
    if isinstance(config, Task):
        return config, PurePosixPath()
    owner = d.get("_corral_owner")
    if owner is not None:
        return owner, PurePosixPath(OUT, *d["_corral_position"])
    producer = d.get("_corral_producer")
    if isinstance(producer, Task):  # an output built by task_outputs(), outside its tree
        from corral.core.identity import identifier

        return producer, PurePosixPath(OUT, PRODUCED, identifier(config)[:16])
    return None
