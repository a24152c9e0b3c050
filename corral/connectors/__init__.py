"""Connectors: a shell and a filesystem, here (``LocalConnector``) or over SSH.

The contract is :class:`Connector` (:mod:`corral.connectors.base`); the built-in connectors
are imported on first use, so that a job process that needs the contract's helpers loads no
SSH or plugin code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from corral.connectors.base import Connector, Result

if TYPE_CHECKING:
    from corral.connectors.local import LocalConnector
    from corral.connectors.ssh import SSHConnector

_LAZY = {"LocalConnector": "corral.connectors.local", "SSHConnector": "corral.connectors.ssh"}

__all__ = ["Connector", "LocalConnector", "Result", "SSHConnector"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'corral.connectors' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
