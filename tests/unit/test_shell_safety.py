"""Shell safety: whatever strings a job's directory, interpreter and environment hold, the
rendered script passes them through exactly and executes nothing (property-based)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corral import ConfigError
from corral.core.job import Resources
from corral.core.script import ScriptSpec, render_job_script, render_secrets
from corral.host.slurm_text import header
from corral.launchers.slurm_script import SlurmOptions, sbatch_options

# Anything a str can hold in an environment or a path: no NUL (the OS refuses it), no lone
# surrogates (not encodable).
TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    max_size=40,
)
NASTY = st.sampled_from(
    ["$(touch PWNED)", "`touch PWNED`", "'; touch PWNED; '", '"$HOME"', "a\nb", "\\", "ü ✓", ""]
)
VALUES = st.one_of(TEXT, NASTY, st.lists(NASTY, max_size=4).map("".join))
NAMES = st.from_regex(r"\A[A-Z_][A-Z0-9_]{0,8}\Z").filter(
    lambda n: n not in {"PWD", "OLDPWD", "SHLVL", "_", "PYTHON", "CORRAL_JOB_DIR", "IFS",
                        "PATH", "HOME"}
)
ENVIRON = st.dictionaries(NAMES, VALUES, max_size=6)
DIR_NAMES = st.one_of(NASTY, TEXT).map(lambda s: s.replace("/", "_")).filter(
    lambda s: s not in ("", ".", "..") and len(s.encode()) < 200
)

FAKE_PYTHON = """#!/bin/sh
# Stands for the interpreter: records what it was given.
exec "{python}" -c 'import json, os, sys; json.dump({{"argv": sys.argv[1:], "cwd": os.getcwd(), \
"env": dict(os.environ)}}, open(os.environ["CORRAL_JOB_DIR"] + "/seen.json", "w"))' "$@"
"""


@settings(max_examples=300, deadline=None)
@given(job_dir=TEXT, python=TEXT, environ=ENVIRON, setup=st.just([]))
def test_every_script_parses(job_dir, python, environ, setup):
    script = render_job_script(
        ScriptSpec(job_dir=job_dir or "/x", python=python or "p", identifier="ab" * 32,
                   type_id="m.T", environ=environ, setup=setup)
    )
    done = subprocess.run(["bash", "-n"], input=script.encode(), capture_output=True)
    assert done.returncode == 0, done.stderr


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=DIR_NAMES, environ=ENVIRON, secret=VALUES)
def test_values_reach_the_job_exactly_and_run_nothing(tmp_path_factory, name, environ, secret):
    root = tmp_path_factory.mktemp("s")
    job_dir = root / name
    (job_dir / ".corral").mkdir(parents=True)
    fake = root / "fake python $(x)"
    fake.write_text(FAKE_PYTHON.format(python=sys.executable))
    fake.chmod(0o755)
    (job_dir / ".corral" / "secrets.env").write_text(render_secrets({"TOKEN": secret}))
    script = render_job_script(
        ScriptSpec(job_dir=str(job_dir), python=str(fake), identifier="ab" * 32, type_id="m.T",
                   environ=environ, secrets=".corral/secrets.env")
    )
    (job_dir / "job.sh").write_text(script)
    done = subprocess.run(["bash", str(job_dir / "job.sh")], cwd=root, capture_output=True,
                          env={"PATH": os.environ["PATH"], "HOME": str(root)}, timeout=30)
    assert done.returncode == 0, (job_dir / "stderr").read_text()
    seen = json.loads((job_dir / "seen.json").read_text())
    assert seen["argv"] == ["-m", "corral.run", "params.json"]
    assert seen["cwd"] == str(job_dir)
    for key, value in environ.items():
        assert seen["env"][key] == value
    assert seen["env"]["TOKEN"] == secret
    assert not list(root.rglob("PWNED")) and not Path("PWNED").exists()


@given(value=TEXT)
def test_sbatch_lines_are_single_words_or_refused(value):
    try:
        lines = header(sbatch_options(Resources(), SlurmOptions.make(partition=value)))
    except ConfigError as exc:
        message = str(exc)
        assert "\n" not in message  # a property of every refusal
        return
    for line in lines:
        option = line.removeprefix("#SBATCH ")
        assert option.split() == [option] and not set(option) & set("'\"\\")


@pytest.mark.parametrize("value", ["a b", "x'y", 'x"y', "a\nb", "a\\b", "a\tb"])
def test_sbatch_option_with_white_space_or_quotes_is_refused(value):
    with pytest.raises(ConfigError, match="white space and quotes are not allowed"):
        header(sbatch_options(Resources(), SlurmOptions.make(partition=value)))
