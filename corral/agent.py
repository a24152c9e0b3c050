"""The host-side agent of remote launchers: ``python -m corral.agent COMMAND``.

A remote launcher sends one command per batch over its SSH connection, with a JSON request
on stdin, and reads a JSON answer on stdout. The agent applies :mod:`corral.core.hostjobs`
to job directories on its own host, exactly as the local launcher does on the client's:

- ``version``: corral and Python versions, and ``$HOME``;
- ``recover``: for each directory, done / still running (pid + start time) / to start;
- ``start``: write each job's files and start it detached (new session) unless it is done
  or running already, under its job lock;
- ``poll``: the status of started jobs (markers and liveness together);
- ``cancel``: SIGTERM to each job's process group;
- ``inspect``: each directory's final marker, if any.

For ``"launcher": "slurm"`` liveness is the job's SLURM state (``squeue``), and a ``start``
writes one array wrapper for the batch and submits it with a single ``sbatch``.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from corral.core import hostjobs, procs
from corral.core.hostjobs import Status


def _status_json(status: Status | None) -> Any:
    if status is None:
        return None
    state, failure = status
    return [state.value, failure.to_json() if failure is not None else None]


def _alive(handles: list[Any]) -> list[bool]:
    return [procs.handle_alive(h) for h in handles]


def _clean_env() -> dict[str, str]:
    """This environment without SLURM_* (a submission from inside a job must not inherit)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}


def slurm_states(ids: list[str]) -> dict[str, str]:
    """``{array task id: SLURM state}`` from one ``squeue`` call."""
    bases = sorted({i.split("_")[0] for i in ids})
    if not bases:
        return {}
    out = subprocess.run(
        ["squeue", "-h", "-r", "-t", "all", "-j", ",".join(bases), "-o", "%i|%T"],
        capture_output=True,
        text=True,
        env=_clean_env(),
        timeout=120,
        check=False,
    )
    # After MinJobAge squeue forgets a job (and exits 1 if it knows none): gone, not alive.
    return dict(line.split("|", 1) for line in out.stdout.split() if "|" in line)


def _slurm_alive(handles: list[Any]) -> list[bool]:
    from corral.launchers.slurm_states import ACTIVE

    ids = [h["id"] for h in handles if isinstance(h, dict) and "id" in h]
    states = slurm_states(ids)
    return [isinstance(h, dict) and states.get(h.get("id", "")) in ACTIVE for h in handles]


def _sbatch(spec: dict[str, Any]) -> Any:
    """A spawn that submits the batch as one job array."""
    from corral.launchers.slurm_script import array_wrapper

    def spawn(dirs: list[Path]) -> list[Any]:
        wrapper = Path(spec["path"])
        wrapper.parent.mkdir(parents=True, exist_ok=True)
        text = array_wrapper(
            [str(d) for d in dirs],
            spec["options"],
            name=spec["name"],
            comment=spec["comment"],
            output=spec["output"],
            dependency=spec.get("dependency", []),
            throttle=spec.get("throttle"),
        )
        _write(wrapper, text, 0o755)
        argv = ["sbatch", "--parsable", str(wrapper)]
        done = subprocess.run(
            argv, capture_output=True, text=True, env=_clean_env(), timeout=120, check=False
        )
        if done.returncode != 0:
            from corral.errors import SubmissionError

            raise SubmissionError(
                "sbatch refused the job",
                argv=argv,
                returncode=done.returncode,
                stderr=done.stderr,
            )
        job_id = done.stdout.strip().split(";")[0]
        return [
            {"id": f"{job_id}_{i}", "array": job_id, "wrapper": str(wrapper)}
            for i in range(len(dirs))
        ]

    return spawn


def _write(path: Path, text: str, mode: int) -> None:
    from corral.connectors.local import atomic_write_text

    atomic_write_text(path, text, mode)


def _spawn(dirs: list[Path]) -> list[Any]:
    handles = []
    for job_dir in dirs:
        proc = subprocess.Popen(
            ["bash", str(job_dir / "job.sh")],
            cwd=job_dir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # survives the SSH connection and this agent
            close_fds=True,
        )
        handles.append(procs.handle_for(proc.pid))
    return handles


def version(_: dict[str, Any]) -> Any:
    """Versions, to check the remote side before the first submission."""
    from corral import __version__

    return {
        "corral": __version__,
        "python": platform.python_version(),
        "executable": sys.executable,
        "home": os.path.expanduser("~"),
    }


def _liveness(launcher: str) -> Any:
    return _slurm_alive if launcher == "slurm" else _alive


def recover(request: dict[str, Any]) -> Any:
    """``{"launcher", "dirs"}`` → per directory ``{"status", "handle"}``."""
    dirs = [Path(d) for d in request["dirs"]]
    found = hostjobs.recover(dirs, request["launcher"], _liveness(request["launcher"]))
    return [{"status": _status_json(s), "handle": h} for s, h in found]


def start(request: dict[str, Any]) -> Any:
    """``{"launcher", "jobs": [{"dir", "files"}], "sbatch"?}`` → per job ``{"status", "handle"}``.

    With ``"sbatch": {wrapper path, options, name, comment, output, dependency}``, the jobs
    started go out as one SLURM array; otherwise each starts as a detached process.
    """
    entries = [(Path(j["dir"]), j["files"]) for j in request["jobs"]]
    chosen = _sbatch(request["sbatch"]) if "sbatch" in request else _spawn
    spawned: list[Any] = []

    def spawn(dirs: list[Path]) -> list[Any]:
        handles = chosen(dirs)
        spawned.extend(handles)
        return handles

    started = hostjobs.start(
        entries,
        request["launcher"],
        alive=_liveness(request["launcher"]),
        spawn=spawn,
        write=_write,
    )
    return [
        {"status": _status_json(s), "handle": h, "new": any(h is x for x in spawned)}
        for s, h in started
    ]


def poll(request: dict[str, Any]) -> Any:
    """``{"jobs": [{"dir", "handle"}]}`` → per job ``{"status"}``."""
    return [
        {"status": _status_json(hostjobs.poll(Path(j["dir"]), procs.handle_alive(j["handle"])))}
        for j in request["jobs"]
    ]


def cancel(request: dict[str, Any]) -> Any:
    """``{"handles"}``: SIGTERM each live job's process group."""
    for handle in request["handles"]:
        if procs.handle_alive(handle):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(handle["pid"], signal.SIGTERM)
    return {}


def inspect(request: dict[str, Any]) -> Any:
    """``{"dirs"}`` → per directory its final status (from the markers) or None."""
    from corral.core.workspace import final_state

    return [_status_json(final_state(Path(d))) for d in request["dirs"]]


COMMANDS = {
    "version": version,
    "recover": recover,
    "start": start,
    "poll": poll,
    "cancel": cancel,
    "inspect": inspect,
}


def main(argv: list[str] | None = None) -> int:
    """Read the request, run the command, print the answer."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] not in COMMANDS:
        print(f"usage: python -m corral.agent {'|'.join(COMMANDS)}", file=sys.stderr)
        return 2
    # The client may vanish mid-command (killed, connection dropped): finish the work anyway,
    # so that a job submitted is always recorded as submitted.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    raw = sys.stdin.read()
    request = json.loads(raw) if raw.strip() else {}
    answer = COMMANDS[args[0]](request)
    with contextlib.suppress(OSError):
        json.dump(answer, sys.stdout)
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
