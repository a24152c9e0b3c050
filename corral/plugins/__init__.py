"""The plugin layer: hook markers, the hook specifications, registries and the manager.

A plugin author needs :data:`hookimpl` (also ``corral.hookimpl``) and the hooks of
:mod:`corral.plugins.spec`; see :mod:`corral.plugins.markers` for a complete plugin.
"""

from corral.plugins.manager import PluginManager
from corral.plugins.markers import NAME, hookimpl, hookspec
from corral.plugins.registry import Registry

__all__ = ["NAME", "PluginManager", "Registry", "hookimpl", "hookspec"]
