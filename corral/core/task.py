"""``Task``: a config that runs, and the dependency marks of its outputs."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from corral.core import context
from corral.core.classinfo import class_info
from corral.core.config import Config, children
from corral.core.paths import GeneratedPath
from corral.errors import ConfigError

C = TypeVar("C", bound=Config)


class Dep:
    """The ``dep`` given to :meth:`Task.task_outputs`: marks configs produced by the task."""

    __slots__ = ("task",)

    def __init__(self, task: Task) -> None:
        self.task = task

    def __call__(self, config: C) -> C:
        """Mark ``config`` as depending on the task; returns it unchanged."""
        if not isinstance(config, Config):
            raise ConfigError(f"dep() takes a Config, got {type(config).__name__}")
        if config is self.task:
            return config
        d = config.__dict__
        current = d.get("_corral_producer")
        if current is self.task:
            return config
        if current is not None:
            raise ConfigError(f"{type(config).__qualname__} is already produced by another task")
        if d.get("_corral_digest"):
            raise ConfigError(
                f"{type(config).__qualname__}: cannot mark with dep(), its identifier was "
                "already taken; build a new config inside task_outputs()"
            )
        d["_corral_producer"] = self.task
        return config


@dataclass(frozen=True)
class Rank:
    """Where a process of a distributed job stands (``self.__rank__`` in ``execute()``).

    The same numbers are in the environment PyTorch's ``env://`` rendezvous reads: ``RANK``,
    ``LOCAL_RANK``, ``WORLD_SIZE``, ``LOCAL_WORLD_SIZE``, ``NODE_RANK``, ``MASTER_ADDR``,
    ``MASTER_PORT``. A job of one process is rank 0 of a world of 1.
    """

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    local_world_size: int = 1
    node_rank: int = 0
    master_addr: str = ""
    """The address of rank 0's node."""
    master_port: int = 0


SINGLE = Rank()


class Task(Config):
    """A config that can be submitted and executed.

    ``execute()`` runs in the job, with the job directory as working directory and
    ``self.__taskdir__``, ``self.__tags__`` and ``self.__rank__`` (a :class:`Rank`) set.
    """

    __rank__: Rank = SINGLE

    def execute(self) -> None:
        """The work of the task; subclasses define it."""
        raise ConfigError(f"{type(self).__qualname__} does not define execute()")

    def submit(self, launcher: Any = None, **options: Any) -> Any:
        """Submit to the current experiment; returns :meth:`task_outputs`.

        :param launcher: a ``Launcher``, a registered launcher name (``options`` build it),
            or None for the experiment's launcher.
        """
        xp = context.current()
        if xp is None:
            raise ConfigError(
                f"{type(self).__qualname__}.submit() needs an experiment: "
                "use `with experiment(workdir, name):`"
            )
        return xp.submit(self, launcher, **options)

    def task_outputs(self, dep: Dep) -> Any:
        """What ``submit()`` returns; parts marked with ``dep`` depend on this task."""
        return dep(self)

    def on_completed(self, callback: Callable[[Task], Any]) -> None:
        """Have the client call ``callback(task)`` (or ``callback()``, for a callback that
        takes no argument) once the task's job is done (at once, in
        the experiment's callback thread, if it already is); never in a dry run, never for
        a job that failed. An exception in a callback makes ``wait()`` raise."""
        if not callable(callback):
            raise ConfigError(f"{type(self).__qualname__}.on_completed() takes a callable")
        self.__dict__.setdefault("_corral_on_completed", []).append(callback)
        xp = context.current()
        if xp is not None and "__taskdir__" in self.__dict__:
            xp.on_completed(self, callback)


class TaskCancelled(BaseException):  # like KeyboardInterrupt: a request, not an error
    """Raised inside ``execute()`` when the job is asked to stop (SIGTERM from ``corral jobs
    kill``, ``scancel``, a node going down; SIGINT; SIGHUP). Catch it to clean up, then let it
    go on (or return): the job ends as ``killed`` either way. A batch scheduler gives the
    cleanup its grace period (SLURM's ``KillWait``), the local and SSH launchers their
    ``cancel_grace`` (10 s by default), before SIGKILL."""

    def __init__(self, signum: int, name: str) -> None:
        super().__init__(f"cancelled by {name}")
        self.signum = signum
        self.signal = name


class LightweightTask(Config):
    """A config that runs in another task's job, before it: ``task.submit(init_tasks=[...])``
    (loading weights into a model, seeding, warming a cache). Init tasks enter the
    identity of the task they are given to, in order; their generated paths are in its job
    directory (``out/init/0/...``)."""

    def execute(self) -> None:
        """The work; subclasses define it. Runs with the job directory as working directory."""
        raise ConfigError(f"{type(self).__qualname__} does not define execute()")


def attach_init_tasks(task: Task, init_tasks: Iterable[Any]) -> None:
    """Give ``task`` the init tasks of its submission (before its identity is taken)."""
    from corral.core.identity import identifier

    given = list(init_tasks) if not isinstance(init_tasks, Config) else [init_tasks]
    for item in given:
        if not isinstance(item, LightweightTask):
            raise ConfigError(
                f"{type(task).__qualname__}.submit(init_tasks=...): expected LightweightTask "
                f"instances, got {type(item).__qualname__}"
            )
    current = task.__dict__.get("_corral_init", [])
    if [identifier(i) for i in current] == [identifier(i) for i in given]:
        return
    if task.__dict__.get("_corral_digest"):
        raise ConfigError(
            f"{type(task).__qualname__}.submit(init_tasks=...): its identifier was taken "
            "without these init tasks, and they enter it; submit a copy "
            "(copyconfig(task).submit(init_tasks=[...]))"
        )
    if given:
        task.__dict__["_corral_init"] = given
    else:
        task.__dict__.pop("_corral_init", None)


def producer_of(value: Any) -> Task | None:
    """The task a value depends on: a task itself, a ``dep``-marked config, a generated path."""
    if isinstance(value, Task):
        return value
    if isinstance(value, Config):
        producer = value.__dict__.get("_corral_producer")
        return producer if isinstance(producer, Task) else None
    if isinstance(value, GeneratedPath) and isinstance(value.producer, Task):
        return value.producer
    return None


def dependencies(config: Config) -> list[Task]:
    """The tasks ``config`` needs, in order of first appearance (never ``config`` itself).

    A task used as a param value, a config marked by a task's ``dep``, and a path generated
    by a task all make that task a dependency. The search does not descend into a dependency
    (its own dependencies are its business) but does descend into ``dep``-marked configs.
    """
    found: dict[int, Task] = {}
    seen: set[int] = set()

    def visit(value: Any, top: bool = False) -> None:
        if id(value) in seen:
            return
        seen.add(id(value))
        producer = producer_of(value)
        if producer is not None and producer is not config:
            found.setdefault(id(producer), producer)
        if isinstance(value, Config) and (top or not isinstance(value, Task)):
            info = class_info(type(value))
            for name in info.fields:
                if name in value.__dict__:
                    for child in children(value.__dict__[name]):
                        visit(child)
            for init in value.__dict__.get("_corral_init", ()):
                visit(init)

    visit(config, top=True)
    return list(found.values())
