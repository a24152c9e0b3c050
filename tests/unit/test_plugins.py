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
    with pytest.raises(PluginError, match="unknown launcher 'local'; known: slurm, ssh$"):
        plugins.launchers.get("local")


def test_each_manager_is_independent():
    a, b = Plugins(entry_points=False), Plugins(entry_points=False)
    assert a.pm is not b.pm


def fake_distribution(root, name, module_source):
    """An installed distribution with a ``corral`` entry point, on a sys.path entry."""
    dist = root / f"{name.replace('-', '_')}-0.3.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.3\n")
    (dist / "entry_points.txt").write_text(f"[corral]\n{name} = {name.replace('-', '_')}_mod\n")
    (root / f"{name.replace('-', '_')}_mod.py").write_text(module_source)


def test_plugin_raising_at_import_is_named(tmp_path, monkeypatch):
    fake_distribution(tmp_path, "broken-plugin", "raise ImportError('no module named torch')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PluginError) as e:
        Plugins()
    assert str(e.value) == (
        "plugin 'broken-plugin' (broken_plugin_mod, from broken-plugin 0.3) failed to import: "
        "ImportError: no module named torch"
    )
    monkeypatch.setenv("CORRAL_DISABLE_PLUGINS", "broken-plugin")
    assert "local" in Plugins().launchers


def test_external_plugin_registers_like_a_builtin(tmp_path, monkeypatch):
    fake_distribution(
        tmp_path,
        "batchy",
        "from corral.launchers.local import LocalLauncher\n"
        "from corral.plugins.markers import hookimpl\n"
        "class Batchy(LocalLauncher):\n    name = 'batch'\n"
        "@hookimpl\ndef corral_register_launchers(registry):\n    registry.add(Batchy)\n",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    plugins = Plugins()
    assert plugins.launchers.get("batch").__name__ == "Batchy"
    assert plugins.launchers.origin("batch") == "batchy"
    assert plugins.distributions["batchy"] == "batchy 0.3"
    assert "batchy" in plugins.hook_implementations()["corral_register_launchers"]


def test_every_hook_is_documented():
    import inspect
    from pathlib import Path

    from corral.plugins import spec

    doc = (Path(__file__).parents[2] / "docs" / "plugins.md").read_text()
    hooks = [n for n, f in inspect.getmembers(spec, inspect.isfunction) if n.startswith("corral_")]
    assert len(hooks) >= 4
    for name in hooks:
        signature = f"{name}{inspect.signature(getattr(spec, name))}".replace("'", "")
        assert f"`{signature}`" in doc, f"docs/plugins.md lacks `{signature}`"
