"""``PluginManager``: owns a pluggy manager and offers a typed facade over its hooks.

The built-in plugins are modules that the composition root (:mod:`corral.app.plugins`)
imports and hands over, registered first and exactly like external ones; external plugins
come from the ``corral`` entry-point group. No import-time global: each
:class:`PluginManager` is independent (tests make a fresh one).
"""

from __future__ import annotations

import os
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pluggy

from corral._version import __version__
from corral.errors import PluginError
from corral.plugins import spec
from corral.plugins.markers import NAME
from corral.plugins.registry import Registry

if TYPE_CHECKING:
    from corral.connectors.base import Connector
    from corral.core.job import Job, JobState
    from corral.core.launcher import Launcher

OWN_DISTRIBUTION = f"corral {__version__}"


class PluginManager:
    """The plugin manager of one experiment (or one CLI invocation).

    :param builtins: the built-in plugins (modules), each named after its module; a name
        in ``$CORRAL_DISABLE_PLUGINS`` (comma-separated) is left out.
    :param entry_points: also load the plugins of the ``corral`` entry-point group.
    :param extra: plugin objects (modules, classes, instances) registered last, each named
        after its module or class (``pkg.mod.MyPlugin``), so messages can name it.
    """

    def __init__(
        self,
        *,
        builtins: tuple[ModuleType, ...] = (),
        entry_points: bool = True,
        extra: tuple[object, ...] = (),
    ) -> None:
        self.pm = pluggy.PluginManager(NAME)
        self.pm.add_hookspecs(spec)
        blocked = {n.strip() for n in os.environ.get("CORRAL_DISABLE_PLUGINS", "").split(",")}
        for name in blocked - {""}:
            self.pm.set_blocked(name)
        self.distributions: dict[str, str] = {}
        """The distribution (``name version``) of each installed plugin, by plugin name."""
        for module in builtins:
            if not isinstance(module, ModuleType):
                raise PluginError(
                    f"built-in plugin {module!r}: expected a module, imported by the "
                    "composition root (corral.app.plugins)"
                )
            if self.pm.is_blocked(module.__name__):
                continue
            self.distributions[module.__name__] = OWN_DISTRIBUTION
            self._register(module, module.__name__)
        if entry_points:
            self._load_entry_points()
        for plugin in extra:
            self._register(plugin, self._readable_name(plugin))
        self._check_pending()
        self._launchers: Registry[Launcher] | None = None
        self._connectors: Registry[Connector] | None = None

    def _register(self, plugin: object, name: str) -> None:
        if self.pm.is_registered(plugin):
            raise PluginError(
                f"plugin {self.pm.get_name(plugin)!r} is registered twice (again as {name!r})"
            )
        try:
            self.pm.register(plugin, name=name)
        except pluggy.PluginValidationError as exc:
            # pluggy's message spans lines and repeats the name; the CLI prints one line
            detail = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
            detail = detail.removeprefix(f"Plugin {name!r} ")
            raise PluginError(f"plugin {self.describe(name)}: {detail}") from exc

    def _readable_name(self, plugin: object) -> str:
        """A name for a plugin passed as an object: its module or class path, made unique."""
        if isinstance(plugin, ModuleType):
            base = plugin.__name__
        else:
            cls = plugin if isinstance(plugin, type) else type(plugin)
            base = f"{cls.__module__}.{cls.__qualname__}"
        name, n = base, 1
        while self.pm.get_plugin(name) is not None:
            n += 1
            name = f"{base}#{n}"
        return name

    def _check_pending(self) -> None:
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            name = self.pm.get_name(exc.plugin) or repr(exc.plugin)
            unknown = sorted(
                hook
                for hook, caller in vars(self.pm.hook).items()
                if not hook.startswith("_")
                and not caller.has_spec()
                and any(i.plugin is exc.plugin for i in caller.get_hookimpls())
            )
            known = ", ".join(sorted(self._specified_hooks()))
            raise PluginError(
                f"plugin {self.describe(name)} implements unknown hook(s) "
                f"{', '.join(unknown)}; known: {known}"
            ) from exc

    def _specified_hooks(self) -> list[str]:
        return [
            name
            for name, caller in vars(self.pm.hook).items()
            if not name.startswith("_") and caller.has_spec()
        ]

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
            self.distributions[ep.name] = dist
            self._register(plugin, ep.name)

    def distribution(self, plugin: str) -> str | None:
        """The distribution (``name version``) of a plugin; None for one passed in code."""
        return self.distributions.get(plugin)

    def describe(self, plugin: str) -> str:
        """A plugin's quoted name, with its distribution when it has one."""
        dist = self.distribution(plugin)
        return f"{plugin!r} (from {dist})" if dist else repr(plugin)

    def hook_implementations(self) -> dict[str, list[str]]:
        """For each hook, the plugins implementing it, in registration order."""
        return {
            name: [impl.plugin_name for impl in getattr(self.pm.hook, name).get_hookimpls()]
            for name in sorted(self._specified_hooks())
        }

    def _collect(self, hook: Any, kind: str) -> Registry[Any]:
        registry: Registry[Any] = Registry(kind)
        for impl in hook.get_hookimpls():  # in registration order
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
