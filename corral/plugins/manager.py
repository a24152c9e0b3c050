"""``Plugins``: owns a pluggy manager and offers a typed facade over its hooks.

Built-in plugins are modules named in :data:`BUILTIN_PLUGINS`, registered exactly like
external ones; external plugins come from the ``corral`` entry-point group. No import-time
global: each :class:`Plugins` is independent (tests make a fresh one).
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any

import pluggy

from corral.errors import PluginError
from corral.plugins import spec
from corral.plugins.markers import NAME
from corral.plugins.registry import Registry

if TYPE_CHECKING:
    from corral.connectors.base import Connector
    from corral.core.job import Job, JobState
    from corral.core.launcher import Launcher

BUILTIN_PLUGINS: tuple[str, ...] = (
    "corral.connectors.local",
    "corral.connectors.ssh",
    "corral.launchers.local",
    "corral.launchers.ssh",
    "corral.launchers.slurm",
)
"""Modules of the built-in plugins, registered first, by name."""


def _own_distribution() -> str:
    from corral import __version__

    return f"corral {__version__}"


class Plugins:
    """The plugin manager of one experiment (or one CLI invocation)."""

    def __init__(
        self,
        *,
        builtins: tuple[str, ...] = BUILTIN_PLUGINS,
        entry_points: bool = True,
        extra: tuple[object, ...] = (),
    ) -> None:
        self.pm = pluggy.PluginManager(NAME)
        self.pm.add_hookspecs(spec)
        blocked = {n.strip() for n in os.environ.get("CORRAL_DISABLE_PLUGINS", "").split(",")}
        for name in blocked - {""}:
            self.pm.set_blocked(name)
        for module_name in builtins:
            if self.pm.is_blocked(module_name):
                continue
            try:
                module = importlib.import_module(module_name)
            except Exception as exc:
                raise PluginError(f"plugin {module_name!r} failed to import: {exc}") from exc
            self.pm.register(module, name=module_name)
        self.distributions: dict[str, str] = {name: _own_distribution() for name in builtins}
        if entry_points:
            self._load_entry_points()
        for plugin in extra:
            self.pm.register(plugin)
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"plugin {exc.plugin!r}: {exc}") from exc
        self._launchers: Registry[Launcher] | None = None
        self._connectors: Registry[Connector] | None = None

    def _load_entry_points(self) -> None:
        from importlib.metadata import entry_points

        for ep in entry_points(group=NAME):
            if self.pm.is_blocked(ep.name) or self.pm.has_plugin(ep.name):
                continue
            dist = f"{ep.dist.name} {ep.dist.version}" if ep.dist is not None else "?"
            try:
                plugin = ep.load()
            except Exception as exc:
                raise PluginError(
                    f"plugin {ep.name!r} ({ep.value}, from {dist}) failed to import: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            self.pm.register(plugin, name=ep.name)
            self.distributions[ep.name] = dist

    def hook_implementations(self) -> dict[str, list[str]]:
        """For each hook, the names of the plugins implementing it, in call order."""
        return {
            name: [impl.plugin_name for impl in getattr(self.pm.hook, name).get_hookimpls()]
            for name in sorted(n for n in dir(self.pm.hook) if n.startswith("corral_"))
        }

    def _collect(self, hook: Any, kind: str) -> Registry[Any]:
        registry: Registry[Any] = Registry(kind)
        for impl in reversed(hook.get_hookimpls()):  # in registration order
            registry.current_plugin = impl.plugin_name
            impl.function(registry=registry)
        return registry

    @property
    def launchers(self) -> Registry[Launcher]:
        """Launcher classes by name."""
        if self._launchers is None:
            self._launchers = self._collect(self.pm.hook.corral_register_launchers, "launcher")
        return self._launchers

    @property
    def connectors(self) -> Registry[Connector]:
        """Connector classes by name."""
        if self._connectors is None:
            self._connectors = self._collect(self.pm.hook.corral_register_connectors, "connector")
        return self._connectors

    def prepare_job(self, job: Job, launcher: Launcher) -> None:
        """Call every ``corral_prepare_job`` implementation."""
        self.pm.hook.corral_prepare_job(job=job, launcher=launcher)

    def job_finished(self, job: Job, state: JobState) -> None:
        """Call every ``corral_job_finished`` implementation."""
        self.pm.hook.corral_job_finished(job=job, state=state)
