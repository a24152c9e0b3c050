"""The plugin manager: built-ins register like any plugin; names are unique."""

from __future__ import annotations

import sys

import pluggy
import pytest

from corral import PluginError, __version__
from corral.app.plugins import Plugins
from corral.cli import main
from corral.connectors.local import LocalConnector
from corral.launchers.local import LocalLauncher
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
    assert "by plugin 'corral.launchers.local' (corral.launchers.local.LocalLauncher)" in message
    assert (
        "by plugin 'tests.unit.test_plugins.DuplicatePlugin' (tests.unit.test_plugins.Duplicate)"
        in message
    )


class Misspelled:
    @hookimpl
    def corral_register_launcher(self, registry):  # missing "s"
        pass


def test_misspelled_hook_fails_at_start():
    with pytest.raises(PluginError) as e:
        Plugins(entry_points=False, extra=(Misspelled(),))
    assert str(e.value) == (
        "plugin 'tests.unit.test_plugins.Misspelled' implements unknown hook(s) "
        "corral_register_launcher; known: corral_job_finished, corral_prepare_job, "
        "corral_register_connectors, corral_register_launchers"
    )
    assert isinstance(e.value.__cause__, pluggy.PluginValidationError)


class WrongSignature:
    @hookimpl
    def corral_prepare_job(self, job, launcher, priority):
        pass


def test_wrong_hook_signature_is_a_plugin_error_naming_the_plugin():
    with pytest.raises(PluginError) as e:
        Plugins(entry_points=False, extra=(WrongSignature(),))
    message = str(e.value)
    assert message.startswith(
        "plugin 'tests.unit.test_plugins.WrongSignature': for hook 'corral_prepare_job'"
    )
    assert "hookimpl definition: corral_prepare_job(job, launcher, priority)" in message
    assert "priority" in message.rsplit(";", 1)[-1]
    assert "\n" not in message
    assert isinstance(e.value.__cause__, pluggy.PluginValidationError)


def test_wrong_hook_signature_of_an_installed_plugin_is_one_line_in_the_cli(
    tmp_path, monkeypatch, capsys
):
    fake_distribution(
        tmp_path,
        "sloppy",
        "from corral.plugins.markers import hookimpl\n"
        "@hookimpl\ndef corral_job_finished(job, state, when):\n    pass\n",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "argv", ["corral", "plugins"])
    with pytest.raises(SystemExit) as e:
        main()
    assert e.value.code == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(
        "corral: error: plugin 'sloppy' (from sloppy 0.3): for hook 'corral_job_finished'"
    )
    assert err.count("\n") == 1


class Recorder:
    @hookimpl
    def corral_job_finished(self, job, state):
        pass


def test_plugins_passed_in_code_get_readable_unique_names():
    import corral.launchers.local as module

    plugins = Plugins(
        builtins=(), entry_points=False, extra=(Recorder(), Recorder(), Recorder, module)
    )
    assert plugins.hook_implementations()["corral_job_finished"] == [
        "tests.unit.test_plugins.Recorder",
        "tests.unit.test_plugins.Recorder#2",
        "tests.unit.test_plugins.Recorder#3",
    ]
    assert plugins.launchers.origin("local") == "corral.launchers.local"
    assert plugins.distribution("tests.unit.test_plugins.Recorder") is None


def test_the_same_plugin_object_twice_is_a_plugin_error():
    recorder = Recorder()
    with pytest.raises(
        PluginError,
        match=r"^plugin 'tests.unit.test_plugins.Recorder' is registered twice "
        r"\(again as 'tests.unit.test_plugins.Recorder#2'\)$",
    ):
        Plugins(builtins=(), entry_points=False, extra=(recorder, recorder))


def test_builtins_are_the_modules_the_composition_root_imported():
    import corral.launchers.slurm

    plugins = Plugins(entry_points=False)
    assert plugins.pm.get_plugin("corral.launchers.slurm") is corral.launchers.slurm
    assert plugins.launchers.origin("slurm") == "corral.launchers.slurm"
    with pytest.raises(PluginError, match="built-in plugin 'corral.launchers.nope': expected a module"):
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


def plugins_listing(monkeypatch, capsys) -> str:
    monkeypatch.setattr(sys, "argv", ["corral", "plugins"])
    main()
    return capsys.readouterr().out


def test_cli_lists_hook_implementations_with_their_distribution(tmp_path, monkeypatch, capsys):
    fake_distribution(
        tmp_path,
        "hooky",
        "from corral.plugins.markers import hookimpl\n"
        "@hookimpl\ndef corral_prepare_job(job, launcher):\n    pass\n",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    listing = plugins_listing(monkeypatch, capsys)
    assert "  corral_prepare_job:\n    hooky (hooky 0.3)\n" in listing
    assert (
        "  corral_register_launchers:\n"
        f"    corral.launchers.local (corral {__version__})\n"
    ) in listing


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
