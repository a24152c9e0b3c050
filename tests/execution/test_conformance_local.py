"""The local launcher passes the launcher conformance suite."""

from __future__ import annotations

import pytest

from corral.launchers.local import LocalLauncher
from corral.testing import LauncherConformance


class TestLocalLauncher(LauncherConformance):
    @pytest.fixture
    def launcher_factory(self):
        return lambda: LocalLauncher(cpu_slots=2)
