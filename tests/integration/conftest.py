"""What integration tests share: a Python with PyTorch, built in the background from the start
of the session (it takes tens of seconds) when a test of the session needs it."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

_BUILDS: dict[str, Future[Path]] = {}


def _build(root: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(root)], check=True)
    subprocess.run(
        [str(root / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
         "torch==2.13.0"],
        check=True, capture_output=True, text=True, timeout=900,
    )
    return root / "bin" / "python"


@pytest.fixture(scope="session", autouse=True)
def _start_torch_build(request: pytest.FixtureRequest, tmp_path_factory) -> Iterator[None]:
    """Start building the PyTorch environment at once if a test of the session will use it."""
    if not any("torch_python" in getattr(i, "fixturenames", ()) for i in request.session.items):
        yield
        return
    pool = ThreadPoolExecutor(max_workers=1)
    _BUILDS["torch"] = pool.submit(_build, tmp_path_factory.mktemp("torch") / "venv")
    yield
    pool.shutdown(wait=True)


@pytest.fixture(scope="session")
def torch_python() -> Path:
    """A Python with PyTorch (``torchrun`` beside it) and this corral: a virtual environment on
    this one's site packages."""
    return _BUILDS["torch"].result(timeout=900)
