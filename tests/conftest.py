"""Shared pytest configuration. The test rig's fixtures live in tests/rig/fixtures.py."""

pytest_plugins = ["tests.rig.fixtures"]
