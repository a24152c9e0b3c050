"""Hosts of the hosts file used by name in an experiment, and the progress display."""

from __future__ import annotations

import textwrap

import pytest

import corral
from corral import ConfigError, experiment
from corral.launchers.local import LocalLauncher
from tests.execution.tasks import Fail, Record, read_log


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))  # no user hosts file
    monkeypatch.chdir(tmp_path)
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "corral.toml").write_text(textwrap.dedent("""
        [hosts.box]
        launcher = "local"
        cpu_slots = 1
    """))
    return ws


def test_an_experiment_uses_a_host_by_name(workspace, tmp_path):
    log = tmp_path / "log"
    with experiment(workspace, "hosts", launcher="box") as xp:
        Record(name="a", log=log).submit()
        Record(name="b", log=log).submit(launcher="box")
    launchers = {id(j.launcher) for j in xp.jobs.values()}
    assert len(launchers) == 1  # one host, one launcher (one slot budget)
    (launcher,) = {j.launcher for j in xp.jobs.values()}
    assert isinstance(launcher, LocalLauncher) and launcher.cpu_slots == 1
    assert sorted(r["name"] for r in read_log(log)) == ["a", "b"]
    assert isinstance(corral.launcher("box", workspace=workspace), LocalLauncher)


def test_an_unknown_name_lists_hosts_and_launcher_types(workspace):
    with experiment(workspace, "hosts") as xp:
        with pytest.raises(ConfigError, match=r"unknown host 'nobox' \(did you mean 'box'\?\); declared hosts: box; "
                                              r"launcher types: .*local"):
            xp.resolve_launcher("nobox")
        with pytest.raises(ConfigError, match="options go with a launcher type"):
            xp.resolve_launcher("box", cpus=2)


def test_progress_lines_when_not_a_terminal(tmp_path, capsys):
    log = tmp_path / "log"
    with pytest.raises(corral.JobFailedError):
        with experiment(tmp_path / "ws", "progress", launcher=LocalLauncher(cpu_slots=2),
                        progress=True):
            Record(name="ok", log=log).submit()
            Fail(how="raise", log=log).submit()
    captured = capsys.readouterr()
    out = captured.err  # corral's lines go to stderr, the script's own output stays apart
    assert "failed" in out and "Fail/" in out and "stderr: corral jobs log --err" in out
    assert "2 jobs" in out
    assert out.splitlines()[-1] == "corral: progress: submitted 2 jobs (local)"
    assert "corral:" not in captured.out
