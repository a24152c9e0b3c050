"""Secret environment values: only in an owner-only file the job script sources."""

from __future__ import annotations

import json
import stat

from corral import Job, Launcher, Param, Secret, SubmitHook, Task, experiment
from corral.launchers.local import LocalLauncher

VALUE = "s3cr3t 'quoted' $(touch /tmp/corral-pwned) `x`\nline2 ü"


class with_token(SubmitHook):  # a class decorator, like the seed's needs_java
    def spec(self) -> str:
        return "token"

    def process(self, job: Job, launcher: Launcher) -> None:
        job.environ["TOKEN"] = Secret(VALUE)
        job.environ["PLAIN"] = "visible"


@with_token()
class UsesToken(Task):
    out: Param[str]

    def execute(self) -> None:
        import os
        from pathlib import Path

        Path(self.out).write_text(json.dumps({"token": os.environ["TOKEN"],
                                              "plain": os.environ["PLAIN"]}))


def test_a_secret_reaches_the_job_and_nothing_else(tmp_path):
    out = tmp_path / "seen.json"
    task = UsesToken(out=str(out))
    with experiment(tmp_path / "ws", "secret", launcher=LocalLauncher(cpu_slots=1)) as xp:
        task.submit()
    assert json.loads(out.read_text()) == {"token": VALUE, "plain": "visible"}
    job_dir = task.__taskdir__
    secret_file = job_dir / ".corral" / "secrets.env"
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(job_dir.stat().st_mode) == 0o700
    for path in job_dir.rglob("*"):
        if path.is_file() and path != secret_file:
            assert "s3cr3t" not in path.read_text(errors="replace"), path
    for path in (tmp_path / "ws" / "experiments").rglob("*"):
        if path.is_file():
            assert "s3cr3t" not in path.read_text(), path
    assert "PLAIN=visible" in (job_dir / "job.sh").read_text()
    (job,) = xp.jobs.values()
    assert repr(job.environ["TOKEN"]) == str(job.environ["TOKEN"]) == "Secret('***')"
    import os

    assert not os.path.exists("/tmp/corral-pwned")


def test_secret_takes_a_str_only():
    import pytest

    from corral import ConfigError

    with pytest.raises(ConfigError, match="Secret takes a str, got int"):
        Secret(42)  # type: ignore[arg-type]
    assert Secret("a") == Secret("a") and Secret("a").reveal() == "a"


def test_a_secret_is_masked_in_dry_run_and_jobs_show(tmp_path, capsys):
    from click.testing import CliRunner

    import corral.cli.jobs  # noqa: F401  (registers the command)
    from corral.cli import cli

    with experiment(tmp_path / "dry", "secret", launcher=LocalLauncher(cpu_slots=1), dry_run=True):
        UsesToken(out=str(tmp_path / "never.json")).submit()
    printed = capsys.readouterr().out
    assert "TOKEN" in printed and "s3cr3t" not in printed
    task = UsesToken(out=str(tmp_path / "seen.json"))
    with experiment(tmp_path / "ws", "secret", launcher=LocalLauncher(cpu_slots=1)):
        task.submit()
    shown = CliRunner().invoke(cli, ["jobs", "show", "-w", str(tmp_path / "ws"),
                                     task.__taskdir__.name[:12]])
    assert shown.exit_code == 0, shown.output
    assert "TOKEN" in shown.output and "s3cr3t" not in shown.output
