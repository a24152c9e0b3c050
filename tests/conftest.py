"""Shared pytest configuration. The test rig's fixtures live in tests/rig/fixtures.py."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

pytest_plugins = ["tests.rig.fixtures"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        default=False,
        help="rewrite golden files from the current output (review the diff!)",
    )


@pytest.fixture(scope="session", autouse=True)
def _own_ssh_holders(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The session's shared SSH connections live in a runtime directory of its own (inherited
    by the corral processes tests start), and are closed when the session ends."""
    from corral.connectors.ssh_share import shut_all

    run = tmp_path_factory.mktemp("run")
    run.chmod(0o700)
    before = os.environ.get("XDG_RUNTIME_DIR")
    os.environ["XDG_RUNTIME_DIR"] = str(run)
    try:
        yield
    finally:
        shut_all()
        if before is None:
            os.environ.pop("XDG_RUNTIME_DIR", None)
        else:
            os.environ["XDG_RUNTIME_DIR"] = before
