"""Built-in launchers: ``LocalLauncher``, ``SSHLauncher``, ``SlurmLauncher`` (and ``LauncherPool``
over several), and ``HostLauncher``, the base of launchers whose job directories are on
this machine. The contract itself is :class:`corral.Launcher`; ``Origin`` is what
:meth:`Launcher.for_recorded <corral.core.launcher.Launcher.for_recorded>` receives.
"""

from corral.core.launcher import Origin
from corral.core.pool import FirstFit, LauncherPool
from corral.launchers.local import HostLauncher, LocalLauncher
from corral.launchers.slurm import SlurmLauncher
from corral.launchers.ssh import SSHLauncher

__all__ = [
    "FirstFit",
    "HostLauncher",
    "LauncherPool",
    "LocalLauncher",
    "Origin",
    "SSHLauncher",
    "SlurmLauncher",
]
