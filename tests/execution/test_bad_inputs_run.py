"""Bad inputs that need a job to run: output that is not UTF-8, a huge param."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from corral import JobFailedError, Param, Task, experiment
from corral.cli import cli
from corral.core.workspace import Workspace
from corral.launchers.local import LocalLauncher
from corral.ops.inventory import find_job

NOT_UTF8 = b"caf\xe9 \xff\xfe\n"


class Garble(Task):
    """Writes bytes that are not UTF-8 to stdout and stderr, then fails with them."""

    label: Param[str]

    def execute(self) -> None:
        os.write(1, b"out: " + NOT_UTF8)
        os.write(2, b"err: " + NOT_UTF8)
        raise RuntimeError("bad bytes " + NOT_UTF8.decode("utf-8", "surrogateescape"))


class Huge(Task):
    """Writes the length and digest of its (huge) param."""

    text: Param[str]

    def execute(self) -> None:
        digest = hashlib.sha256(self.text.encode()).hexdigest()
        Path("seen.json").write_text(json.dumps({"length": len(self.text), "sha256": digest}))


def launcher(tmp_path: Path) -> LocalLauncher:
    return LocalLauncher(cpu_slots=2, slots_dir=tmp_path / "slots")


def test_output_that_is_not_utf8_never_breaks_a_report(tmp_path, workspace, monkeypatch):
    task = Garble(label="x")
    with pytest.raises(JobFailedError) as caught:
        with experiment(workspace, "garble", launcher=launcher(tmp_path)):
            task.submit()
    assert "failed: RuntimeError: bad bytes caf\ufffd \ufffd\ufffd" in str(caught.value)
    (job,) = caught.value.failures
    assert job.reason == "failed"

    ident = job.identifier[:12]
    runner = CliRunner()
    for args, expected in (
        (["jobs", "log", ident], "out: caf\ufffd \ufffd\ufffd\n"),
        (["jobs", "log", "--err", ident], "err: caf\ufffd \ufffd\ufffd\n"),
        (["jobs", "show", ident], "message:   RuntimeError: bad bytes caf\ufffd \ufffd\ufffd"),
        (["jobs", "ls"], "failed"),
    ):
        result = runner.invoke(cli, [*args, "-w", str(workspace)])
        assert result.exit_code == 0, result.output
        assert expected in result.output

    # A remote job's log is read over its connector (here, this machine's).
    from corral.app.plugins import Plugins
    from corral.ops import control

    info = find_job(Workspace(workspace), ident)
    remote = dataclasses.replace(info, pointer={"connector": "local", "host": "box"},
                                 remote_dir=str(info.local_dir))
    plugins = Plugins()
    assert control.read_log(remote, plugins) == "out: caf\ufffd \ufffd\ufffd\n"
    assert control.read_log(remote, plugins, stderr=True).startswith("err: caf\ufffd")


def test_a_ten_megabyte_param_reaches_the_job(tmp_path, workspace):
    text = "0123456789abcdef" * 655_360  # 10 MiB
    task = Huge(text=text)
    with experiment(workspace, "huge", launcher=launcher(tmp_path)):
        task.submit()
    seen = json.loads((task.__taskdir__ / "seen.json").read_text())
    assert seen == {"length": len(text), "sha256": hashlib.sha256(text.encode()).hexdigest()}
    assert len((task.__taskdir__ / "job.sh").read_text()) < 2000  # the param is not in it
