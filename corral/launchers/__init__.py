"""Built-in launchers: ``LocalLauncher``, ``SSHLauncher`` (and ``LauncherPool`` over them)."""

from corral.core.pool import LauncherPool
from corral.launchers.local import LocalLauncher
from corral.launchers.slurm import SlurmLauncher
from corral.launchers.ssh import SSHLauncher

__all__ = ["LauncherPool", "LocalLauncher", "SSHLauncher", "SlurmLauncher"]
