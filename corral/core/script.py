"""Job scripts, rendered by pure functions: same input, same script, no I/O.

Every value is ``shlex.quote``d. The script changes to the job directory, exports the job's
environment, sends its own stdout/stderr to files in the job directory, and ``exec``s the
Python process so that signals reach it.
"""

from __future__ import annotations

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
