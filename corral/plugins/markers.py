"""Markers for corral plugins.

A plugin is a module (or object) with functions marked ``@hookimpl`` whose names are hooks of
:mod:`corral.plugins.spec`. A complete external launcher plugin::

    # mylab_corral/plugin.py
    from corral.core.launcher import Launcher
    from corral.plugins.markers import hookimpl

    class MyLauncher(Launcher):
        name = "mylab"
        ...

    @hookimpl
    def corral_register_launchers(registry):
        registry.add(MyLauncher)

and in its ``pyproject.toml``::

    [project.entry-points.corral]
    mylab = "mylab_corral.plugin"

After ``pip install``, ``experiment(..., launcher="mylab")`` uses it.
"""

from __future__ import annotations

import pluggy

NAME = "corral"
"""The pluggy project name, and the entry-point group of external plugins."""

hookimpl = pluggy.HookimplMarker(NAME)
"""Marks a hook implementation."""

hookspec = pluggy.HookspecMarker(NAME)
"""Marks a hook specification (used by :mod:`corral.plugins.spec` only)."""
