"""corral: run experiments on a laptop, SSH GPU boxes and SLURM clusters."""

from __future__ import annotations

from corral.core.config import Config
from corral.core.fields import Constant, Meta, Param, field, pathgenerator, tag
from corral.core.identity import identifier
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

__version__ = "0.1.0"

__all__ = [
    "AuthenticationError",
    "Config",
    "ConfigError",
    "ConnectorError",
    "Constant",
    "CorralError",
    "HostKeyError",
    "JobFailedError",
    "Meta",
    "Param",
    "PluginError",
    "SubmissionError",
    "Task",
    "__version__",
    "dependencies",
    "field",
    "identifier",
    "pathgenerator",
    "tag",
]
