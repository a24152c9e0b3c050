"""Test kit for launcher plugin authors.

``corral.testing.plugin`` is a pytest plugin (loaded automatically through the ``pytest11``
entry point) with fixtures and the launcher conformance suite; ``corral.testing.tasks`` holds
the tasks the suite submits, importable in any job process (they need only corral)::

    from corral.testing import LauncherConformance

    class TestMyLauncher(LauncherConformance):
        @pytest.fixture
        def launcher_factory(self):
            return lambda: MyLauncher(partition="debug")
"""

from __future__ import annotations

from typing import Any

__all__ = ["LauncherConformance", "make_job", "read", "run_until_final"]


def __getattr__(name: str) -> Any:
    if name in __all__:  # imported on use: job processes import corral.testing.tasks only
        from corral.testing import plugin

        return getattr(plugin, name)
    raise AttributeError(f"module 'corral.testing' has no attribute {name!r}")
