"""The benchmark runner: a benchmark that fails or is interrupted leaves the others' figures
printed and saved; a peer over its time limit is a row of the table, not a hang."""

from __future__ import annotations

import json
import sys

import pytest

from benchmarks import __main__ as runner
from benchmarks import slurm_tasks


def run(monkeypatch, capsys, *argv: str) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["benchmarks", *argv])
    code = runner.main()
    return code, capsys.readouterr().out


def fake_p1(self) -> None:
    self.rows.append(runner.Row("P1", "build", "1 ms", "", "", None, "", None))


def test_a_failed_benchmark_is_noted_and_the_others_are_reported(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(runner.Bench, "p1", fake_p1)

    def broken(self) -> None:
        raise RuntimeError("corral's run timed out after 420 s")

    monkeypatch.setattr(runner.Bench, "p2", broken)
    code, out = run(monkeypatch, capsys, "--quick", "--only", "P1,P2",
                    "--json", str(tmp_path / "b.json"))
    assert code == 1
    assert "| P1 | build | 1 ms |" in out
    assert "- P2: failed: corral's run timed out after 420 s" in out
    saved = json.loads((tmp_path / "b.json").read_text())
    assert [r["bench"] for r in saved["rows"]] == ["P1"]


def test_an_interrupt_still_prints_and_saves_what_was_measured(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(runner.Bench, "p1", fake_p1)

    def interrupted(self) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(runner.Bench, "p2", interrupted)
    code, out = run(monkeypatch, capsys, "--quick", "--only", "P1,P2,P5",
                    "--json", str(tmp_path / "b.json"))
    assert code == 130
    assert "| P1 | build | 1 ms |" in out and "P5 ..." not in out
    assert "- P2: interrupted; what was measured before is below" in out
    assert json.loads((tmp_path / "b.json").read_text())["rows"][0]["bench"] == "P1"


def test_a_peer_over_its_limit_or_without_sacct_is_reported_not_waited_for(monkeypatch):
    monkeypatch.setattr(slurm_tasks, "unavailable", lambda: None)
    monkeypatch.setattr(slurm_tasks, "rig_environ", lambda: {})
    monkeypatch.setattr(slurm_tasks, "rig_has_sacct", lambda: False)
    monkeypatch.setattr(slurm_tasks.importlib.util, "find_spec", lambda name: object())

    def measure(tool, tasks, args, environ):
        if tool == "submitit":
            raise slurm_tasks.PeerFailed("timed out after 420 s")
        return slurm_tasks.Run(tool, 1.0, slurm_tasks.Counter(), slurm_tasks.Counter(), 0, 0)

    monkeypatch.setattr(slurm_tasks, "measure", measure)
    failed: dict[str, str] = {}
    runs = slurm_tasks.run_tools(200, ["corral", "submitit", "experimaestro"], failed=failed)
    assert list(runs) == ["corral"]
    assert failed["submitit"] == "timed out after 420 s"
    assert failed["experimaestro"].startswith("not run: it needs sacct")


def test_the_time_limit_grows_with_the_tasks():
    assert slurm_tasks.time_limit(200) == pytest.approx(420)
    assert slurm_tasks.time_limit(1000) > slurm_tasks.time_limit(200)
