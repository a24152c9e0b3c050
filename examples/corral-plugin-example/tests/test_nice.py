"""The nice launcher: conformance suite, priority inside the job, use by name."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from corral_nice.plugin import NiceLauncher

from corral import ConfigError, Param, Task, experiment
from corral.testing import LauncherConformance


class TestNiceLauncher(LauncherConformance):
    @pytest.fixture
    def launcher_factory(self):
        return lambda: NiceLauncher(niceness=5, cpu_slots=2)


class Niceness(Task):
    label: Param[str]

    def execute(self):
        Path("niceness.txt").write_text(str(os.nice(0)))


def test_jobs_run_at_the_requested_niceness(tmp_path):
    with experiment(tmp_path, "nice", launcher="nice"):
        default = Niceness(label="default")
        default.submit()
        low = Niceness(label="low")
        low.submit(launcher="nice", niceness=15)
    base = os.nice(0)
    assert int((default.__taskdir__ / "niceness.txt").read_text()) == min(19, base + 10)
    assert int((low.__taskdir__ / "niceness.txt").read_text()) == min(19, base + 15)


def test_the_plugin_is_found_through_its_entry_point(corral_plugins):
    assert corral_plugins.launchers.get("nice") is NiceLauncher
    assert corral_plugins.distributions["nice"].startswith("corral-plugin-example ")


def test_bad_niceness_is_a_clear_error():
    with pytest.raises(ConfigError, match=r"niceness must be an int in 0\.\.19, got 42"):
        NiceLauncher(niceness=42)
