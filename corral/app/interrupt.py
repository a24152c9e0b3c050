"""What an experiment script prints when it stops early: Ctrl-C, SIGTERM, a corral error.

A corral error that leaves the script is one line, ``corral: error: …``, as the ``corral``
command prints it; an error in the user's own call (a config that does not validate) also
shows the user's frames, never corral's. Ctrl-C (or SIGTERM) is one line saying what goes on
without the client and how to come back to it, and the script exits 130 (143).
``CORRAL_DEBUG=1`` shows everything.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import traceback
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

from corral.core.job import Job
from corral.errors import ConfigError, CorralError

PACKAGE = Path(__file__).resolve().parents[1]
"""corral's own package: frames from there are left out of what a user sees."""
EXIT_INTERRUPT = 130
EXIT_TERMINATED = 143


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the client's main thread where Ctrl-C raises KeyboardInterrupt."""


def debug() -> bool:
    """Whether the user asked for tracebacks (``CORRAL_DEBUG=1``)."""
    return os.environ.get("CORRAL_DEBUG", "").strip().lower() in ("1", "true", "yes")


def user_frames(tb: TracebackType | None) -> traceback.StackSummary:
    """The frames of ``tb`` outside corral's own package (the user's code, their libraries)."""
    frames = [f for f in traceback.extract_tb(tb) if not _in_corral(f.filename)]
    return traceback.StackSummary.from_list(frames)


def _in_corral(filename: str) -> bool:
    try:
        return Path(filename).resolve().is_relative_to(PACKAGE)
    except (OSError, ValueError):
        return False


def describe(error: BaseException, tb: TracebackType | None) -> str:
    """What a script prints for an uncaught corral error: the user's frames when the error is
    about their own call (a :class:`~corral.errors.ConfigError`), then one line."""
    line = f"corral: error: {error}"
    if not isinstance(error, ConfigError):
        return line
    frames = user_frames(tb)
    if not frames:
        return line
    return (
        "Traceback (most recent call last, corral's frames left out):\n"
        + "".join(frames.format())
        + line
    )


def one_line_errors() -> None:
    """Install (once) the hook that prints a script's uncaught corral error as
    :func:`describe` says; any other exception goes to the hook there was."""
    previous = sys.excepthook
    if getattr(previous, "corral", False):
        return

    def hook(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
        if isinstance(value, CorralError) and not debug():
            print(describe(value, tb), file=sys.stderr, flush=True)
        else:
            previous(kind, value, tb)

    hook.corral = True  # type: ignore[attr-defined]
    sys.excepthook = hook


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While the block runs in the main thread, SIGTERM raises :class:`Terminated` there, as
    Ctrl-C raises KeyboardInterrupt (elsewhere, or where SIGTERM is ignored, nothing)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise Terminated()

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main interpreter
        yield
        return
    if previous == signal.SIG_IGN:
        signal.signal(signal.SIGTERM, previous)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def stopped_early(name: str, workspace: Path, jobs: Iterable[Job], terminated: bool) -> str:
    """The one line for a client stopped by Ctrl-C or SIGTERM: what keeps running without
    it, what will not start, how to re-attach or stop them."""
    jobs = list(jobs)
    going = [j for j in jobs if j.state.in_flight]
    waiting = [j for j in jobs if not j.state.in_flight and not j.state.ended]
    how = "terminated" if terminated else "interrupted"
    parts = [f"corral: {how}"]
    if going:
        parts.append(f"{len(going)} job(s) keep running without this client")
    if waiting:
        parts.append(f"{len(waiting)} not started will start when you run the script again")
    if not going and not waiting:
        parts.append("no job was running")
        return "; ".join(parts)
    if going:
        parts.append(
            f"run the script again to re-attach, or stop them with: corral xp kill "
            f"{_quote(name)} -w {_quote(str(workspace))}"
        )
    return "; ".join(parts)


def _quote(text: str) -> str:
    import shlex

    return shlex.quote(text)


def exit_code(exc: KeyboardInterrupt) -> int:
    """130 for Ctrl-C, 143 for SIGTERM (128 + the signal), as shells report them."""
    return EXIT_TERMINATED if isinstance(exc, Terminated) else EXIT_INTERRUPT
