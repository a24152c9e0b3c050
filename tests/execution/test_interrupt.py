"""A client stopped early, as a user stops it: Ctrl-C (a real SIGINT), SIGTERM, an error in
the script. One line says what goes on and what to do; corral's frames stay out of sight."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import sys, time
    from corral import Param, Task, experiment
    from corral.launchers import LocalLauncher


    class Nap(Task):
        seconds: Param[float]
        i: Param[int]

        def execute(self):
            time.sleep(self.seconds)


    if __name__ == "__main__":
        with experiment(sys.argv[1], "naps", launcher=LocalLauncher(cpu_slots=2)):
            for i in range(4):
                Nap(seconds=60, i=i).submit()
    """
)

BAD = textwrap.dedent(
    """
    import sys
    from corral import Param, Task, experiment


    class Point(Task):
        i: Param[int]

        def execute(self):
            pass


    def sweep():
        return [Point(i="x")]


    if __name__ == "__main__":
        with experiment(sys.argv[1], "bad"):
            for task in sweep():
                task.submit()
    """
)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    path = tmp_path / "project"
    path.mkdir()
    (path / "naps.py").write_text(SCRIPT)
    (path / "bad.py").write_text(BAD)
    return path


def _as_from_a_terminal() -> None:
    # A session started in the background (`cmd &` in a script) ignores SIGINT, and so
    # would the client: give it the disposition it has when started at a terminal.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(project: Path, script: str, ws: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, script, str(ws)], cwd=project, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True,
        env={**os.environ, "PYTHONPATH": str(REPO)}, preexec_fn=_as_from_a_terminal,
    )


def running_jobs(ws: Path) -> int:
    return sum(1 for _ in ws.glob("jobs/*/*/.corral/launch.json"))


def wait_for_two_running(client: subprocess.Popen, ws: Path) -> None:
    deadline = time.monotonic() + 60
    while running_jobs(ws) < 2:
        assert client.poll() is None, client.communicate()
        assert time.monotonic() < deadline, "the jobs never started"
        time.sleep(0.1)


def corral(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "corral", *args], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})


@pytest.mark.parametrize(("sig", "code", "word"), [(signal.SIGINT, 130, "interrupted"),
                                                   (signal.SIGTERM, 143, "terminated")])
def test_a_stopped_client_says_in_one_line_what_goes_on(project, tmp_path, sig, code, word):
    ws = tmp_path / "ws"
    client = start(project, "naps.py", ws)
    wait_for_two_running(client, ws)
    client.send_signal(sig)
    out, err = client.communicate(timeout=60)
    try:
        assert client.returncode == code, err
        assert err.splitlines() == [
            f"corral: {word}; 2 job(s) keep running without this client; 2 not started will "
            "start when you run the script again; run the script again to re-attach, or stop "
            f"them with: corral xp kill naps -w {ws}"
        ]
        assert "Traceback" not in out + err
    finally:
        killed = corral("xp", "kill", "naps", "-w", str(ws), "--grace", "1")
    assert killed.returncode == 0, killed.stderr
    assert not list(ws.glob("experiments/naps/runs/*.stop"))  # no client to ask: no request
    listing = corral("jobs", "ls", "-w", str(ws)).stdout
    assert "running" not in listing
    # the two the client never launched are called what they are, and waiting says so
    runs = corral("xp", "ls", "-w", str(ws)).stdout
    assert "2 not submitted" in runs, runs
    waited = corral("xp", "wait", "naps", "-w", str(ws), "--interval", "0.1")
    assert waited.returncode == 1
    assert waited.stdout.splitlines()[-1].endswith(
        "2 job(s) of naps were never submitted (its client stopped first): run the "
        "experiment script again to submit them"
    ), waited.stdout


def test_an_error_in_the_script_shows_the_users_frames_not_corrals(project, tmp_path):
    done = subprocess.run([sys.executable, "bad.py", str(tmp_path / "ws")], cwd=project,
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert lines[0] == "Traceback (most recent call last, corral's frames left out):"
    assert lines[-1] == "corral: error: Point.i: expected int, got str 'x'"
    shown = "\n".join(lines)
    assert 'bad.py", line' in shown and "in sweep" in shown and 'Point(i="x")' in shown
    assert f"{os.sep}corral{os.sep}" not in shown.replace(str(project), "")


def test_corral_debug_shows_the_whole_traceback(project, tmp_path):
    done = subprocess.run([sys.executable, "bad.py", str(tmp_path / "ws")], cwd=project,
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(REPO), "CORRAL_DEBUG": "1"})
    assert done.returncode == 1
    assert "corral/core/" in done.stderr
    assert done.stderr.splitlines()[-1].startswith("corral.errors.ConfigError: Point.i:")


KILLABLE = textwrap.dedent(
    """
    import sys, time
    from corral import Param, Task, experiment
    from corral.launchers import LocalLauncher


    class Nap(Task):
        seconds: Param[float]
        i: Param[int]

        def execute(self):
            print("started", self.i, flush=True)
            time.sleep(self.seconds)


    if __name__ == "__main__":
        with experiment(sys.argv[1], "naps", launcher=LocalLauncher(cpu_slots=2)):
            for i in range(6):
                Nap(seconds=60, i=i).submit()
    """
)


def test_xp_kill_stops_a_live_client_and_nothing_starts_after(project, tmp_path):
    (project / "killable.py").write_text(KILLABLE)
    ws = tmp_path / "ws"
    client = start(project, "killable.py", ws)
    wait_for_two_running(client, ws)
    # while the client lives, the 4 jobs it has not submitted yet are waited for
    waited = corral("xp", "wait", "naps", "-w", str(ws), "--interval", "0.2", "--timeout", "1.5")
    assert waited.returncode == 2 and "never submitted" not in waited.stdout, waited.stdout
    killed = corral("xp", "kill", "naps", "-w", str(ws), "--grace", "1")
    assert killed.returncode == 0, killed.stderr
    lines = killed.stdout.splitlines()
    assert lines[0].startswith("asking its client (pid ")
    assert "starts nothing more" in lines[1]
    assert sum("killed" in line or "cancelled" in line for line in lines[2:]) == 2, lines
    _, err = client.communicate(timeout=60)
    assert client.returncode == 1
    assert err.splitlines()[-1].startswith(
        "corral: error: the experiment was stopped with `corral xp kill` (run "
    )
    assert "4 job(s) never started, 2 stopped or failed, 0 done" in err
    time.sleep(2)  # had the client started anything after the kill, it would show by now
    assert running_jobs(ws) == 2
    listing = corral("jobs", "ls", "-w", str(ws)).stdout
    assert "running" not in listing
