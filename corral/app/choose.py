"""Choosing a launcher: the one place a name, a query or an instance becomes a launcher.

A launcher is given as an instance (or a :class:`~corral.core.pool.LauncherPool`), as a
registered launcher type with options (``"slurm"``, ``partition="gpu"``), as a host of the
hosts files (``"cluster"``, see :mod:`corral.app.hosts`), or found by a capacity query
(``find_launcher("gpus=1 & time<=2h")``, see :mod:`corral.app.finder`). Within a pool, the
member that runs a job is the pool's own choice, made once per job
(:meth:`LauncherPool.choose <corral.core.pool.LauncherPool.choose>`).
"""

from __future__ import annotations

import inspect
import json
import os
from typing import Any

from corral.app.finder import find_host
from corral.app.hosts import load_hosts
from corral.app.plugins import Plugins
from corral.core.capacity import parse_offer
from corral.core.launcher import Launcher
from corral.core.pool import FirstFit, LauncherPool
from corral.errors import ConfigError, PluginError, did_you_mean
from corral.plugins.manager import PluginManager

Choice = Launcher | LauncherPool


def check_options(what: str, factory: Any, options: dict[str, Any]) -> None:
    """Refuse keyword ``options`` that ``factory`` does not take, listing those it takes."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # no signature to check against
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    valid = sorted(
        name
        for name, p in params.items()
        if p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    )
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ConfigError(f"{what}: unknown option {unknown[0]!r}; valid: {', '.join(valid)}")


class Launchers:
    """The launchers of one experiment: each name and set of options built once.

    :param plugins: where launcher types are registered.
    :param workspace: whose ``corral.toml`` declares hosts too.
    """

    def __init__(self, plugins: PluginManager, workspace: str | os.PathLike[str]) -> None:
        self.plugins = plugins
        self.workspace = workspace
        self._built: dict[str, Launcher] = {}

    def resolve(self, launcher: Choice | str, **options: Any) -> Choice:
        """A launcher (or pool) from an instance, a registered name (with options) or a
        declared host."""
        if isinstance(launcher, Launcher | LauncherPool):
            if options:
                raise ConfigError("launcher options go with a launcher name, not an instance")
            return launcher
        if not isinstance(launcher, str):
            raise ConfigError(
                "launcher: expected a Launcher, a LauncherPool or a registered name, got "
                f"{type(launcher).__name__}"
            )
        key = launcher + json.dumps(options, sort_keys=True, default=str)
        if key not in self._built:
            self._built[key] = self._build(launcher, options)
        return self._built[key]

    def _build(self, name: str, options: dict[str, Any]) -> Launcher:
        registry = self.plugins.launchers
        if name in registry:
            cls = registry.get(name)
            check_options(f"launcher {name!r}", cls, options)
            built: Launcher = cls(**options)
            return built
        hosts = load_hosts(self.workspace)  # a host of the hosts files (hosts.toml, corral.toml)
        if options:
            if name not in hosts:
                known = ", ".join(registry.names())
                hint = did_you_mean(name, [*registry.names(), *hosts.names()])
                raise PluginError(f"unknown launcher {name!r}{hint}; known: {known}")
            raise ConfigError(
                f"launcher {name!r}: options go with a launcher type "
                f"({', '.join(registry.names())}), not with a host name"
            )
        return launcher(name, workspace=self.workspace, plugins=self.plugins)


def launcher(
    name: str,
    *,
    workspace: str | os.PathLike[str] | None = None,
    plugins: PluginManager | None = None,
) -> Launcher:
    """The launcher of a declared host: ``corral.launcher("cluster")``.

    A registered launcher type that no host shadows (``"local"``) is built with its defaults.
    """
    plugins = plugins if plugins is not None else Plugins()
    config = load_hosts(workspace)
    if name in config:
        return config.build(name, plugins)
    if isinstance(name, str) and name in plugins.launchers:
        factory: Any = plugins.launchers.get(name)
        built: Launcher = factory()
        return built
    hosts = ", ".join(config.names()) or f"none (looked in {config.describe_search()})"
    hint = did_you_mean(str(name), [*config.names(), *plugins.launchers.names()])
    raise ConfigError(
        f"unknown host {name!r}{hint}; declared hosts: {hosts}; launcher types: "
        f"{', '.join(plugins.launchers.names())}"
    )


def find_launcher(
    query: str,
    *,
    workspace: str | os.PathLike[str] | None = None,
    plugins: PluginManager | None = None,
) -> Launcher:
    """The launcher of the first host whose declared capacities satisfy ``query``."""
    config = load_hosts(workspace)
    name = find_host(query, hosts=config)
    return config.build(name, plugins if plugins is not None else Plugins())


def fitting(
    *names: str,
    workspace: str | os.PathLike[str] | None = None,
    plugins: PluginManager | None = None,
) -> FirstFit:
    """Declared hosts tried in order (``names``, default: every host of the hosts files):
    each job goes to the first that can give what it asks (``cpus``, ``gpus``,
    ``gpu_type``, ``mem``, ``time``, ``nodes``), from the host's declared capacities,
    completed by what the launcher itself knows (a SLURM partition's nodes, from ``sinfo``).

    ::

        with experiment("ws", "sweep", launcher=corral.fitting("cluster-gpu", "cluster-cpu",
                                                                "gpubox")):
            Train(...).submit(gpus=1, gpu_type="a100")   # the gpu partition
            Evaluate(...).submit(cpus=4)                  # the cpu partition
    """
    plugins = plugins if plugins is not None else Plugins()
    config = load_hosts(workspace)
    chosen = list(names) or config.names()
    if not chosen:
        raise ConfigError(f"fitting(): no host is declared (looked in {config.describe_search()})")
    offers = []
    for name in chosen:
        spec = config.get(name)
        try:
            offers.append(parse_offer(spec.capacity))
        except ValueError as exc:
            key = exc.args[1] if len(exc.args) > 1 else "?"
            raise ConfigError(
                f"{spec.capacity_where(key)}: host {name!r}: {key}: expected {exc.args[0]}"
            ) from None
    members = [config.build(name, plugins) for name in chosen]
    return FirstFit(members, offers=offers, names=chosen)
