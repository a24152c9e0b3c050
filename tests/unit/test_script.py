"""Job scripts: pure rendering pinned by golden files; values are quoted, never executed."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from corral import ConfigError
from corral.core.script import ScriptSpec, render_job_script

DATA = Path(__file__).parent.parent / "data"

SPECS = {
    "job_script_plain": ScriptSpec(
        job_dir="/ws/jobs/pkg.Learn/" + "ab" * 32,
        python="/usr/bin/python3",
        identifier="ab" * 32,
        type_id="pkg.Learn",
    ),
    "job_script_full": ScriptSpec(
        job_dir="/work space/jobs/pkg.Learn/" + "cd" * 32,
        python="/opt/my python/bin/python",
        identifier="cd" * 32,
        type_id="pkg.Learn",
        environ={"JAVA_HOME": "/opt/java 11", "NASTY": "a'b $(rm -rf /) `x`\nz", "EMPTY": ""},
        header=["#SBATCH --job-name=corral-cdcdcdcdcdcd", "#SBATCH --time=01:00:00"],
        setup=["source /opt/venv/bin/activate"],
    ),
    "job_script_secrets": ScriptSpec(
        job_dir="/ws/jobs/pkg.Learn/" + "ef" * 32,
        python="python3",
        identifier="ef" * 32,
        type_id="pkg.Learn",
        environ={"PLAIN": "1"},
        secrets=".corral/secrets.env",
    ),
}


@pytest.mark.parametrize("name", sorted(SPECS))
def test_script_matches_golden_file(name, request):
    golden = DATA / f"{name}.sh"
    rendered = render_job_script(SPECS[name])
    if request.config.getoption("--update-golden", default=False):
        golden.write_text(rendered)
    assert rendered == golden.read_text(), f"rendering changed; diff against {golden}"


def test_rendering_is_pure():
    spec = SPECS["job_script_full"]
    assert render_job_script(spec) == render_job_script(spec)


def test_invalid_environment_name_is_refused():
    spec = ScriptSpec(job_dir="/j", python="p", identifier="i", type_id="t",
                      environ={"BAD NAME": "x"})
    with pytest.raises(ConfigError, match="invalid environment variable name 'BAD NAME'"):
        render_job_script(spec)


def test_exported_values_reach_bash_exactly(tmp_path):
    value = "a'b $(touch pwned) `touch pwned` \"q\" \\ \n next\t$HOME"
    spec = ScriptSpec(job_dir=str(tmp_path), python="/bin/true", identifier="i", type_id="t",
                      environ={"VALUE": value})
    script = render_job_script(spec).replace(
        'exec "$PYTHON" -m corral.run params.json', 'printf %s "$VALUE" > value.txt'
    )
    (tmp_path / "job.sh").write_text(script)
    subprocess.run(["bash", str(tmp_path / "job.sh")], check=True, env=dict(os.environ))
    assert (tmp_path / "value.txt").read_text() == value
    assert not (tmp_path / "pwned").exists()


def test_secrets_file_quotes_every_value():
    from corral.core.script import render_secrets

    text = render_secrets({"TOKEN": "a'b $(x)\nc", "A": ""})
    assert text == "export A=''\nexport TOKEN='a'\"'\"'b $(x)\nc'\n"
    out = subprocess.run(["bash", "-c", text + 'printf %s "$TOKEN"'], capture_output=True,
                         text=True, check=True)
    assert out.stdout == "a'b $(x)\nc"
