"""The plugin manager: built-ins register like any plugin; names are unique."""

from __future__ import annotations

import pytest

from corral import PluginError
from corral.connectors.local import LocalConnector
from corral.launchers.local import LocalLauncher
from corral.plugins.manager import Plugins
from corral.plugins.markers import hookimpl


def test_builtins_register_through_the_hooks():
    plugins = Plugins(entry_points=False)
    assert plugins.launchers.get("local") is LocalLauncher
    assert plugins.connectors.get("local") is LocalConnector
    assert plugins.launchers.origin("local") == "corral.launchers.local"


class Duplicate(LocalLauncher):
    name = "local"


class DuplicatePlugin:
    @hookimpl
    def corral_register_launchers(self, registry):
        registry.add(Duplicate)


def test_duplicate_name_names_both_plugins():
    plugins = Plugins(entry_points=False, extra=(DuplicatePlugin(),))
    with pytest.raises(PluginError) as e:
        _ = plugins.launchers
    message = str(e.value)
    assert "launcher name 'local' registered twice" in message
    assert "corral.launchers.local" in message
    assert "Duplicate" in message


class Misspelled:
    @hookimpl
    def corral_register_launcher(self, registry):  # missing "s"
        pass


def test_misspelled_hook_fails_at_start():
    with pytest.raises(PluginError, match="corral_register_launcher"):
        Plugins(entry_points=False, extra=(Misspelled(),))


def test_unknown_builtin_module_is_named():
    with pytest.raises(PluginError, match="plugin 'corral.launchers.nope' failed to import"):
        Plugins(builtins=("corral.launchers.nope",), entry_points=False)


def test_disabled_plugin(monkeypatch):
    monkeypatch.setenv("CORRAL_DISABLE_PLUGINS", "corral.launchers.local")
    plugins = Plugins(entry_points=False)
    with pytest.raises(PluginError, match="unknown launcher 'local'; known: \\(none\\)"):
        plugins.launchers.get("local")


def test_each_manager_is_independent():
    a, b = Plugins(entry_points=False), Plugins(entry_points=False)
    assert a.pm is not b.pm
