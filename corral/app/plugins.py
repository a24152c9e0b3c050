"""The built-in plugins, imported here as modules, and the plugin manager that has them.

This is where the composition root meets the plugin layer: the built-in connectors and
launchers are registered first, through the same hooks as a third-party plugin (the
``corral`` entry-point group), so ``experiment(..., launcher="ssh")`` and a plugin's
``launcher="mylab"`` are found the same way.
"""

from __future__ import annotations

from types import ModuleType

from corral.connectors import local as local_connector
from corral.connectors import ssh as ssh_connector
from corral.launchers import local as local_launcher
from corral.launchers import slurm as slurm_launcher
from corral.launchers import ssh as ssh_launcher
from corral.plugins.manager import PluginManager

BUILTIN_PLUGINS: tuple[ModuleType, ...] = (
    local_connector,
    ssh_connector,
    local_launcher,
    ssh_launcher,
    slurm_launcher,
)
"""The built-in plugins, registered first, in this order."""


class Plugins(PluginManager):
    """A plugin manager with corral's built-in plugins, then the installed ones.

    :param entry_points: also load the plugins of the ``corral`` entry-point group.
    :param extra: plugin objects (modules, classes, instances) registered last, each named
        after its module or class (``pkg.mod.MyPlugin``), so messages can name it.
    :param builtins: the built-in plugins (default: :data:`BUILTIN_PLUGINS`).
    """

    def __init__(
        self,
        *,
        entry_points: bool = True,
        extra: tuple[object, ...] = (),
        builtins: tuple[ModuleType, ...] = BUILTIN_PLUGINS,
    ) -> None:
        super().__init__(builtins=builtins, entry_points=entry_points, extra=extra)
