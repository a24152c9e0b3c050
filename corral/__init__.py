"""corral: run experiments on a laptop, SSH GPU boxes and SLURM clusters."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from typing import Literal as Choices  # Param[Choices["adam", "sgd"]]: a fixed set

from corral._version import __version__
from corral.core.config import Config
from corral.core.configops import copyconfig, setmeta, stop_tags
from corral.core.fields import Constant, Meta, Param, field, partial, pathgenerator, tag
from corral.core.identity import identifier, partial_identifier
from corral.core.resumable import ResumableTask
from corral.core.task import LightweightTask, Task, TaskCancelled, dependencies
from corral.errors import (
    AuthenticationError,
    CallbackFailed,
    ConfigError,
    ConnectorError,
    CorralError,
    ExperimentStopped,
    HostKeyError,
    JobFailedError,
    LoginNeeded,
    PluginError,
    SubmissionError,
)

if TYPE_CHECKING:
    from corral.app.choose import find_launcher, fitting, launcher
    from corral.app.experiment import experiment
    from corral.app.finder import match_hosts
    from corral.app.hosts import load_hosts
    from corral.app.plugins import Plugins
    from corral.core.cache import cache
    from corral.core.hooks import SubmitHook, submit_hook_decorator
    from corral.core.job import Job, JobState, Secret
    from corral.core.launcher import Launcher
    from corral.ops.explain import explain
    from corral.plugins.markers import hookimpl

# Imported on first use, so that a job process (``python -m corral.run``) starts fast.
_LAZY = {
    "cache": "corral.core.cache",
    "experiment": "corral.app.experiment",
    "explain": "corral.ops.explain",
    "SubmitHook": "corral.core.hooks",
    "submit_hook_decorator": "corral.core.hooks",
    "Job": "corral.core.job",
    "JobState": "corral.core.job",
    "find_launcher": "corral.app.choose",
    "fitting": "corral.app.choose",
    "hookimpl": "corral.plugins.markers",
    "launcher": "corral.app.choose",
    "load_hosts": "corral.app.hosts",
    "match_hosts": "corral.app.finder",
    "Plugins": "corral.app.plugins",
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
    "CallbackFailed",
    "Choices",
    "Config",
    "ConfigError",
    "ConnectorError",
    "Constant",
    "CorralError",
    "ExperimentStopped",
    "HostKeyError",
    "Job",
    "JobFailedError",
    "JobState",
    "Launcher",
    "LightweightTask",
    "LoginNeeded",
    "Meta",
    "Param",
    "PluginError",
    "Plugins",
    "ResumableTask",
    "Secret",
    "SubmissionError",
    "SubmitHook",
    "Task",
    "TaskCancelled",
    "__version__",
    "cache",
    "copyconfig",
    "dependencies",
    "experiment",
    "explain",
    "field",
    "find_launcher",
    "fitting",
    "hookimpl",
    "identifier",
    "launcher",
    "load_hosts",
    "match_hosts",
    "partial",
    "partial_identifier",
    "pathgenerator",
    "setmeta",
    "stop_tags",
    "submit_hook_decorator",
    "tag",
]
