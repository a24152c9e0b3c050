"""Submit hooks: class decorators that adjust a job's environment and resources.

::

    class needs_java(SubmitHook):
        def __init__(self, version: int):
            self.version = version
        def spec(self):
            return self.version
        def process(self, job, launcher):
            job.environ["JAVA_HOME"] = ...

    @needs_java(11)
    class IndexCollection(Config): ...

The hooks of every config in a task's tree are collected, de-duplicated by
``(type(hook), hook.spec())`` and applied once, before the plugins' ``corral_prepare_job``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any, TypeVar

from corral.errors import ConfigError

if TYPE_CHECKING:
    from corral.core.config import Config
    from corral.core.job import Job
    from corral.core.launcher import Launcher

C = TypeVar("C", bound=type)

_HOOKS = "_corral_submit_hooks"


class SubmitHook:
    """Base class of submit hooks; an instance decorates config classes."""

    def spec(self) -> Hashable:
        """A hashable identifier of this hook's settings (equal specs apply once)."""
        return None

    def process(self, job: Job, launcher: Launcher) -> None:
        """Adjust ``job`` (``job.environ``, ``job.resources``) for ``launcher``."""

    def __call__(self, cls: C) -> C:
        from corral.core.config import Config

        if not (isinstance(cls, type) and issubclass(cls, Config)):
            raise ConfigError(f"{type(self).__name__}(...) decorates Config classes only")
        hooks = list(cls.__dict__.get(_HOOKS, ()))
        hooks.append(self)
        type.__setattr__(cls, _HOOKS, tuple(hooks))
        return cls


def submit_hook_decorator(
    fn: Callable[..., None],
) -> Callable[..., SubmitHook]:
    """Turn ``def hook(job, launcher, *args)`` into a decorator factory ``@hook(*args)``.

    The arguments given to the factory are the hook's ``spec()``.
    """

    class FunctionHook(SubmitHook):
        def __init__(self, *args: Hashable, **kwargs: Hashable) -> None:
            self.args = args
            self.kwargs = kwargs

        def spec(self) -> Hashable:
            return (self.args, tuple(sorted(self.kwargs.items())))

        def process(self, job: Job, launcher: Launcher) -> None:
            fn(job, launcher, *self.args, **self.kwargs)

    FunctionHook.__name__ = FunctionHook.__qualname__ = fn.__name__
    FunctionHook.__module__ = fn.__module__

    @functools.wraps(fn)
    def factory(*args: Hashable, **kwargs: Hashable) -> SubmitHook:
        return FunctionHook(*args, **kwargs)

    return factory


def collect_hooks(configs: Any) -> list[SubmitHook]:
    """The hooks of every config (and their base classes), de-duplicated, in order."""
    seen: set[tuple[type, Hashable]] = set()
    hooks: list[SubmitHook] = []
    done_classes: set[type] = set()
    config: Config
    for config in configs:
        for cls in reversed(type(config).__mro__):
            if cls in done_classes:
                continue
            done_classes.add(cls)
            for hook in cls.__dict__.get(_HOOKS, ()):
                key = (type(hook), hook.spec())
                if key not in seen:
                    seen.add(key)
                    hooks.append(hook)
    return hooks
