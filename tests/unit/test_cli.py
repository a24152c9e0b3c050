"""The ``corral`` command."""

from __future__ import annotations

import subprocess
import sys

import corral


def test_version():
    out = subprocess.run(
        [sys.executable, "-c", "from corral.cli import main; main()", "--version"],
        capture_output=True, text=True, check=True,
    )
    assert out.stdout.strip() == f"corral, version {corral.__version__}"


def test_console_script_is_installed():
    from pathlib import Path

    exe = Path(sys.executable).parent / "corral"  # installed beside the interpreter
    assert exe.exists()
    out = subprocess.run([exe, "--help"], capture_output=True, text=True, check=True)
    assert "Run experiments" in out.stdout
