"""Shared pytest configuration. The test rig's fixtures live in tests/rig/fixtures.py."""

from __future__ import annotations

import pytest

pytest_plugins = ["tests.rig.fixtures"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        default=False,
        help="rewrite golden files from the current output (review the diff!)",
    )
