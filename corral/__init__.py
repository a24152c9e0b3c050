"""corral: run experiments on a laptop, SSH GPU boxes and SLURM clusters."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from corral.core.config import Config
from corral.core.fields import Constant, Meta, Param, field, pathgenerator, tag
from corral.core.identity import identifier
from corral.core.resumable import ResumableTask
from corral.core.task import Task, dependencies
from corral.errors import (
    AuthenticationError,
    ConfigError,
    ConnectorError,
    CorralError,
    HostKeyError,
    JobFailedError,
    PluginError,
    SubmissionError,
)

if TYPE_CHECKING:
    from corral.core.cache import cache
    from corral.core.experiment import experiment
    from corral.core.hooks import SubmitHook, submit_hook_decorator
    from corral.core.job import Job, Secret
    from corral.core.launcher import Launcher
    from corral.explain import explain
    from corral.finder import find_launcher
    from corral.hosts import launcher

__version__ = "0.1.0"

# Imported on first use, so that a job process (``python -m corral.run``) starts fast.
_LAZY = {
    "cache": "corral.core.cache",
    "experiment": "corral.core.experiment",
    "explain": "corral.explain",
    "SubmitHook": "corral.core.hooks",
    "submit_hook_decorator": "corral.core.hooks",
    "Job": "corral.core.job",
    "find_launcher": "corral.finder",
    "launcher": "corral.hosts",
    "Secret": "corral.core.job",
    "Launcher": "corral.core.launcher",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'corral' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "AuthenticationError",
    "Config",
    "ConfigError",
    "ConnectorError",
    "Constant",
    "CorralError",
    "HostKeyError",
    "Job",
    "JobFailedError",
    "Launcher",
    "Meta",
    "Param",
    "PluginError",
    "ResumableTask",
    "Secret",
    "SubmissionError",
    "SubmitHook",
    "Task",
    "__version__",
    "cache",
    "dependencies",
    "experiment",
    "explain",
    "field",
    "find_launcher",
    "identifier",
    "launcher",
    "pathgenerator",
    "submit_hook_decorator",
    "tag",
]
