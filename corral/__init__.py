"""corral: run experiments on a laptop, SSH GPU boxes and SLURM clusters."""

from __future__ import annotations

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
    "ConfigError",
    "ConnectorError",
    "CorralError",
    "HostKeyError",
    "JobFailedError",
    "PluginError",
    "SubmissionError",
    "__version__",
]
