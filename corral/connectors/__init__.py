"""Connectors: a shell and a filesystem, here (``LocalConnector``) or over SSH."""

from corral.connectors.base import Connector, Result
from corral.connectors.local import LocalConnector
from corral.connectors.ssh import SSHConnector

__all__ = ["Connector", "LocalConnector", "Result", "SSHConnector"]
