"""``@cache("name")``: a per-identity, locked path in the workspace cache.

::

    class Terms(Config):
        @cache("terms.npy")
        def load(self, path: Path):
            if path.is_file():
                return np.load(path)
            weights = self.compute_weights()
            np.save(path, weights)
            return weights

``path`` is ``WORKSPACE/cache/<type id>/<identifier>/terms.npy``; the method body runs under a
file lock, so two processes computing the same cache run it one after the other (the second
finds the file). WORKSPACE is the job's workspace inside a job, the current experiment's in
the client, else ``$CORRAL_WORKSPACE``.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from corral.core import context
from corral.errors import ConfigError

P = ParamSpec("P")
R = TypeVar("R")
S = TypeVar("S")

def current_workspace() -> Path:
    """The workspace ``@cache`` uses here (see the module docstring)."""
    inside = context.job_workspace()
    if inside is not None:
        return inside
    xp = context.current()
    if xp is not None:
        return xp.workspace_root
    env = os.environ.get("CORRAL_WORKSPACE")
    if env:
        return Path(env)
    raise ConfigError(
        "@cache needs a workspace: run inside a job or an experiment, or set CORRAL_WORKSPACE"
    )


Method = Callable[Concatenate[S, Path, P], R]
Cached = Callable[Concatenate[S, P], R]


def cache(name: str) -> Callable[[Method[S, P, R]], Cached[S, P, R]]:
    """Decorate a config method ``method(self, path, ...)`` with a cached, locked path."""
    if not name or "/" in name or name in (".", ".."):
        raise ConfigError(f"@cache({name!r}): expected a file name without '/'")

    def decorator(method: Method[S, P, R]) -> Cached[S, P, R]:
        def wrapper(self: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
            from filelock import FileLock

            from corral.core.identity import identifier, type_id

            config: Any = self
            directory = current_workspace() / "cache" / type_id(config) / identifier(config)
            directory.mkdir(parents=True, exist_ok=True)
            with FileLock(directory / f"{name}.lock"):
                return method(self, directory / name, *args, **kwargs)

        functools.update_wrapper(wrapper, method)
        return wrapper

    return decorator
