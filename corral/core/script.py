"""Job scripts, rendered by pure functions: same input, same script, no I/O; and read back.

Every value is ``shlex.quote``d. The script changes to the job directory, exports the job's
environment, sends its own stdout/stderr to files in the job directory, and ``exec``s the
Python process so that signals reach it.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from corral.connectors.base import check_env_name


@dataclass(frozen=True)
class ScriptSpec:
    """Everything a job script says."""

    job_dir: str
    python: str
    identifier: str
    type_id: str
    environ: Mapping[str, str] = field(default_factory=dict)
    header: Sequence[str] = ()
    setup: Sequence[str] = ()
    params: str = "params.json"
    secrets: str | None = None
    """A file of ``export NAME=value`` lines, relative to the job directory, sourced first."""


def render_job_script(spec: ScriptSpec) -> str:
    """The bash script that runs one job."""
    q = shlex.quote
    lines = ["#!/usr/bin/env bash", *spec.header]
    lines.append(f"# corral job {spec.type_id} {spec.identifier}")
    lines.append(f"cd -- {q(spec.job_dir)} || exit 70")
    lines.append("exec >stdout 2>stderr")
    if spec.secrets is not None:
        lines.append(f". {q(spec.secrets)} || exit 70")
    for name in sorted(spec.environ):
        lines.append(f"export {check_env_name(name)}={q(str(spec.environ[name]))}")
    lines.extend(spec.setup)
    lines.append(f"export CORRAL_JOB_DIR={q(spec.job_dir)}")
    lines.append(f"PYTHON={q(spec.python)}")
    lines.append(f'exec "$PYTHON" -m corral.run {q(spec.params)}')
    return "\n".join(lines) + "\n"


def render_secrets(secrets: Mapping[str, str]) -> str:
    """The content of a secrets file: one quoted ``export`` per variable."""
    return "".join(
        f"export {check_env_name(name)}={shlex.quote(secrets[name])}\n" for name in sorted(secrets)
    )


@dataclass(frozen=True)
class ScriptInfo:
    """What a rendered ``job.sh`` says (see :func:`render_job_script`)."""

    python: str | None
    environ: dict[str, str]
    """Variables exported for the job (by submit hooks, plugins and the launcher)."""
    setup: list[str]
    """Shell lines run before the job (a launcher's ``setup``)."""
    secrets: str | None = None
    """The file of secret variables the script sources (values never in ``job.sh``)."""


_EXPORT = re.compile(r"^export ([A-Za-z_][A-Za-z0-9_]*)=(.*)$")


def parse_job_script(text: str) -> ScriptInfo:
    """The interpreter, exported environment and setup lines of a rendered ``job.sh``."""
    lines = text.splitlines()
    try:
        start = lines.index("exec >stdout 2>stderr") + 1
    except ValueError:
        return ScriptInfo(None, {}, [])
    environ: dict[str, str] = {}
    setup: list[str] = []
    python = secrets = None
    for line in lines[start:]:
        if line.startswith(". ") and line.endswith(" || exit 70") and not environ and not setup:
            words = shlex.split(line[2 : -len(" || exit 70")])
            secrets = words[0] if words else None
            continue
        if line.startswith("export CORRAL_JOB_DIR="):
            continue
        if line.startswith("PYTHON="):
            words = shlex.split(line[len("PYTHON=") :])
            python = words[0] if words else None
            continue
        if line.startswith('exec "$PYTHON"'):
            break
        match = _EXPORT.match(line)
        if match and not setup:  # exports come first, sorted; then the setup lines
            words = shlex.split(match.group(2))
            environ[match.group(1)] = words[0] if words else ""
        else:
            setup.append(line)
    return ScriptInfo(python, environ, setup, secrets)
