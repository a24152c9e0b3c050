"""The example plugin package, installed with pip into a fresh virtual environment.

Installing it makes its launcher appear in ``corral plugins`` and usable by name, with no
change to corral; its own test suite (the conformance suite) passes there; uninstalling it
removes it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "corral-plugin-example"

USE_BY_NAME = """
import sys
from corral import Param, Task, experiment

class Hello(Task):
    who: Param[str]
    def execute(self):
        print("hello", self.who)

if __name__ == "__main__":
    with experiment(sys.argv[1], "by-name", launcher="nice"):
        task = Hello(who="plugin")
        task.submit()
    print((task.__taskdir__ / "stdout").read_text().strip())
"""


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("venv") / "env"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(root)],
                   check=True)
    pip(root, "install", "--no-deps", "-e", str(REPO))
    return root


def pip(venv: Path, *args: str) -> None:
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check",
                    "-q", *args], check=True, capture_output=True, text=True)


def run(venv: Path, *argv: str, cwd: Path | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "CORRAL_DISABLE_PLUGINS")}
    out = subprocess.run([str(venv / "bin" / argv[0]), *argv[1:]], capture_output=True,
                         text=True, env=env, cwd=cwd)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def test_install_use_by_name_run_its_suite_uninstall(venv, tmp_path):
    assert "nice" not in run(venv, "corral", "plugins")
    pip(venv, "install", "--no-deps", str(EXAMPLE))

    listing = run(venv, "corral", "plugins")
    assert "nice         corral_nice.plugin.NiceLauncher  from nice (corral-plugin-example 0.1.0)" in listing
    hooks = listing.split("hook implementations:\n", 1)[1]
    assert "    nice (corral-plugin-example 0.1.0)\n" in hooks  # its hook implementations too

    script = tmp_path / "use_by_name.py"
    script.write_text(textwrap.dedent(USE_BY_NAME))
    assert run(venv, "python", str(script), str(tmp_path / "ws")).strip() == "hello plugin"

    suite = run(venv, "python", "-m", "pytest", "-q", "-p", "no:cacheprovider",
                str(EXAMPLE / "tests"), cwd=REPO)
    assert " passed" in suite and "failed" not in suite

    pip(venv, "uninstall", "-y", "corral-plugin-example")
    assert "nice" not in run(venv, "corral", "plugins")
