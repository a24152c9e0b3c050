"""Fixtures of the execution tests: a workspace and a log file."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    return tmp_path / "workspace"


@pytest.fixture
def log(tmp_path: Path) -> Path:
    return tmp_path / "executions.log"
