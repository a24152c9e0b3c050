"""Progress of an experiment's jobs, live on a terminal and as log lines elsewhere.

::

    with Progress(lambda: xp.jobs.values(), title=xp.name):
        xp.wait()

On a terminal it is a rich display refreshed a few times per second: counts by state for
each launcher, the longest-running jobs with their elapsed time, and the failures with their
reason and where to read their stderr. It writes to stderr, so that an experiment script's
own output stays apart; when stderr is not a terminal (``nohup``, a log file, CI) it prints
one line per job that finishes or fails, and a summary line at most every ``summary_every``
seconds.
``quiet=True`` prints the failures only.

Its thread only reads ``job.state`` and ``job.failure``: the scheduler knows nothing of it.
Elapsed times count from when a job was first seen running. It shows anything that looks
like a job (:class:`Shown`): the scheduler's jobs, or ``corral xp wait``'s view of a run.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from contextlib import suppress
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple, Protocol

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from corral.core.job import Failure, FailureReason, JobState
from corral.errors import log_command

STYLES = {  # the scheduler's states, in the order a job goes through them
    JobState.WAITING: "dim",
    JobState.READY: "cyan",
    JobState.SUBMITTED: "blue",
    JobState.RUNNING: "yellow",
    JobState.DONE: "green",
    JobState.FAILED: "bold red",
}


class Shown(Protocol):
    """What the display reads of a job. A job's ``launcher`` has a ``name``, and a
    ``connector.destination`` when it runs elsewhere."""

    @property
    def state(self) -> JobState: ...
    @property
    def failure(self) -> Failure | None: ...
    @property
    def name(self) -> str: ...
    @property
    def identifier(self) -> str: ...
    @property
    def stderr(self) -> Path | str: ...
    @property
    def launcher(self) -> Any: ...


class _Seen(NamedTuple):
    job: Shown
    state: JobState
    failure: Failure | None


class Progress:
    """Shows the progress of the jobs that ``jobs()`` returns (called at every refresh).

    :param jobs: the jobs so far, e.g. ``lambda: xp.jobs.values()``; the list may grow.
    :param console: where to write (default: a rich console on stdout).
    :param quiet: print nothing but failures.
    :param live: the live display (default: when ``console`` is a terminal), else log lines.
    :param title: shown first in the display and the summaries (e.g. the experiment name).
    :param refresh_every: seconds between two refreshes.
    :param summary_every: least number of seconds between two summary lines (log lines).
    :param max_running: running jobs listed in the display, longest-running first.
    :param max_failures: failures listed in the display, root causes first.
    :param clock: seconds, monotonic (elapsed times).
    """

    def __init__(
        self,
        jobs: Callable[[], Iterable[Shown]],
        *,
        console: Console | None = None,
        quiet: bool = False,
        live: bool | None = None,
        title: str | None = None,
        workspace: str | None = None,
        refresh_every: float = 0.25,
        summary_every: float = 30.0,
        max_running: int = 5,
        max_failures: int = 5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._jobs = jobs
        self.console = console if console is not None else Console(stderr=True)
        self.quiet = quiet
        if live is None:
            live = self.console.is_terminal and not self.console.is_dumb_terminal
        self.live = live and not quiet
        self.title = title
        self.workspace = workspace
        """Named in the command a failure line gives for the job's stderr."""
        self.refresh_every = refresh_every
        self.summary_every = summary_every
        self.max_running = max_running
        self.max_failures = max_failures
        self._clock = clock
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._display: Live | None = None
        self._error: BaseException | None = None
        self._started = 0.0
        self._snapshot: list[_Seen] = []
        self._seen: dict[Shown, JobState] = {}
        self._running_since: dict[Shown, float] = {}
        self._took: dict[Shown, float] = {}
        self._failed: list[_Seen] = []
        self._held: set[Shown] = set()
        self._summary_at = 0.0
        self._summary_counts: Counter[JobState] | None = None

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Show the jobs as they are now, then refresh from a thread until :meth:`stop`."""
        if self._thread is not None:
            return
        self._started = self._summary_at = self._clock()
        if self.live:
            self._display = Live(console=self.console, auto_refresh=False, transient=False)
            self._display.start()
        self.refresh()
        self._thread = threading.Thread(target=self._run, name="corral-progress", daemon=True)
        self._thread.start()

    def stop(self, *, summary: bool = True) -> None:
        """Refresh a last time, leave the display on screen and print a summary line
        (unless not ``summary``).

        Raises what made the refresh thread stop, if anything did.
        """
        if self._thread is None:
            return
        self._stopping.set()
        self._thread.join()
        self._thread = None
        try:
            if self._error is None:
                self._refresh(summary=False)  # the final summary follows
        finally:
            if self._display is not None:
                self._display.stop()
                self._display = None
                if not self.console.is_terminal:  # rich leaves the last line open there
                    self.console.line()
        if self._error is not None:
            raise self._error
        if summary and not self.quiet:
            self.console.print(self._summary("corral:"), soft_wrap=True)

    def __enter__(self) -> Progress:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.stop()
            return
        with suppress(Exception):  # the exception already on its way matters more
            # an interrupt says in its own line what goes on
            self.stop(summary=not isinstance(exc, KeyboardInterrupt))

    def _run(self) -> None:
        while not self._stopping.wait(self.refresh_every):
            try:
                self.refresh()
            except BaseException as exc:  # surfaced by stop()
                self._error = exc
                return

    # --- one refresh ---------------------------------------------------------------------

    def refresh(self) -> None:
        """Read every job's state once and update the display (or print what changed)."""
        self._refresh(summary=True)

    def _refresh(self, summary: bool) -> None:
        with self._lock:
            self._snapshot = self._read()
            finished = self._observe(self._snapshot)
            if self._display is not None:
                self._display.update(self.render(), refresh=True)
                return
            for seen in finished:
                if seen.state is JobState.FAILED or not self.quiet:
                    self.console.print(self._line(seen), soft_wrap=True)
            if summary and not self.quiet:
                self._maybe_summary()

    def _read(self) -> list[_Seen]:
        for _ in range(5):
            try:
                jobs = list(self._jobs())
            except RuntimeError:  # a dict of jobs grew while it was copied: read it again
                continue
            # state first: the scheduler sets the failure right after the FAILED state
            return [_Seen(job, state, job.failure) for job, state in ((j, j.state) for j in jobs)]
        return self._snapshot

    def _observe(self, snapshot: list[_Seen]) -> list[_Seen]:
        """Note running times and failures; return the jobs seen final for the first time."""
        now = self._clock()
        finished = []
        for seen in snapshot:
            job, state = seen.job, seen.state
            before = self._seen.get(job)
            if state is JobState.RUNNING:
                self._running_since.setdefault(job, now)
            elif not state.final:  # back to ready: a resumable task runs again
                self._running_since.pop(job, None)
            elif before is not state:
                if state is JobState.FAILED and seen.failure is None and job not in self._held:
                    self._held.add(job)  # its failure is being set: report it next time
                    continue
                since = self._running_since.pop(job, None)
                if since is not None:
                    self._took[job] = now - since
                if state is JobState.FAILED:
                    self._failed.append(seen)
                if before is not None or state is JobState.FAILED:
                    finished.append(seen)
            self._seen[job] = state
        return finished

    # --- the live display ----------------------------------------------------------------

    def render(self) -> RenderableType:
        """The display for the jobs as last read."""
        snapshot = self._snapshot
        counts = Counter(s.state for s in snapshot)
        now = self._clock()
        final = counts[JobState.DONE] + counts[JobState.FAILED]
        head = Table.grid(padding=(0, 1))
        head.add_row(
            Text(self.title or "corral", style="bold"),
            ProgressBar(
                total=max(len(snapshot), 1),
                completed=final,
                width=30,
                complete_style="green",
                finished_style="green",
            ),
            Text(f"{final}/{len(snapshot)} finished"),
            Text(_duration(now - self._started), style="dim"),
        )
        parts: list[RenderableType] = [head, self._counts_table(snapshot)]
        running = sorted(
            (s for s in snapshot if s.state is JobState.RUNNING and s.job in self._running_since),
            key=lambda s: self._running_since[s.job],
        )
        if running:
            parts.append(Text("running", style=STYLES[JobState.RUNNING]))
            grid = Table.grid(padding=(0, 2))
            labels = _labels(s.job.launcher for s in snapshot)
            for s in running[: self.max_running]:
                grid.add_row(
                    "  " + s.job.name,
                    labels[s.job.launcher],
                    _duration(now - self._running_since[s.job]),
                )
            parts.append(grid)
            if len(running) > self.max_running:
                parts.append(Text(f"  +{len(running) - self.max_running} more", style="dim"))
        if self._failed:
            parts.append(self._failures())
        return Group(*parts)

    def _counts_table(self, snapshot: list[_Seen]) -> Table:
        labels = _labels(s.job.launcher for s in snapshot)
        rows: dict[str, Counter[JobState]] = {label: Counter() for label in labels.values()}
        for s in snapshot:
            rows[labels[s.job.launcher]][s.state] += 1
        table = Table(box=None, padding=(0, 1), pad_edge=False, show_edge=False)
        table.add_column("launcher")
        for state in STYLES:
            table.add_column(state.value, justify="right", style=STYLES[state])
        if len(rows) > 1:
            rows["total"] = Counter(s.state for s in snapshot)
        for label, counts in rows.items():
            cells = [Text(str(counts[st]), style="" if counts[st] else "dim") for st in STYLES]
            table.add_row(Text(label, style="bold" if label == "total" else ""), *cells)
        return table

    def _failures(self) -> RenderableType:
        # root causes before the jobs that failed because of them
        failed = sorted(self._failed, key=lambda s: _reason(s.failure) is FailureReason.DEPENDENCY)
        labels = _labels(s.job.launcher for s in self._snapshot)
        parts: list[RenderableType] = [Text("failed", style=STYLES[JobState.FAILED])]
        for s in failed[: self.max_failures]:
            line = Text(no_wrap=True, overflow="ellipsis")
            line.append(f"  {s.job.name}  {labels.get(s.job.launcher, s.job.launcher.name)}  ")
            line.append(_reason(s.failure).value, style="red")
            message = _message(s.failure)
            if message:
                line.append(f"  {message}")
            parts.append(line)
            parts.append(Text(f"    {self._stderr(s.job)}", style="dim", overflow="fold"))
        more = failed[self.max_failures :]
        if more:
            deps = sum(_reason(s.failure) is FailureReason.DEPENDENCY for s in more)
            why = f" ({deps} because of a dependency)" if deps else ""
            parts.append(Text(f"  +{len(more)} more{why}", style="dim"))
        return Group(*parts)

    # --- log lines -----------------------------------------------------------------------

    def _line(self, seen: _Seen) -> Text:
        job, labels = seen.job, _labels(s.job.launcher for s in self._snapshot)
        text = Text(time.strftime("[%H:%M:%S] "), style="dim")
        text.append(f"{seen.state.value:<7}", style=STYLES[seen.state])
        text.append(f" {job.name}  {labels.get(job.launcher, job.launcher.name)}")
        if job in self._took:
            text.append(f"  {_duration(self._took[job])}")
        if seen.state is JobState.FAILED:
            message = _message(seen.failure)
            text.append(f"  {_reason(seen.failure).value}" + (f": {message}" if message else ""))
            text.append(f"  stderr: {self._stderr(job)}")
        return text

    def _stderr(self, job: Shown) -> str:
        """Where to read the job's stderr: the command, given the workspace, else its path
        (with its host when it is on another machine)."""
        if self.workspace is not None:
            return log_command(job.identifier, self.workspace)
        where = getattr(getattr(job.launcher, "connector", None), "destination", None)
        return f"{job.stderr} on {where}" if where is not None else str(job.stderr)

    def _maybe_summary(self) -> None:
        now = self._clock()
        counts = Counter(s.state for s in self._snapshot)
        if now - self._summary_at < self.summary_every or counts == self._summary_counts:
            return
        self._summary_at = now
        self._summary_counts = counts
        self.console.print(self._summary(time.strftime("[%H:%M:%S]")), soft_wrap=True)

    def _summary(self, prefix: str) -> Text:
        """``prefix title: 42 jobs in 1m02s: 3 running, 38 done, 1 failed (local: …; …)``."""
        snapshot = self._snapshot
        text = Text(prefix + " " + (f"{self.title}: " if self.title else ""))
        text.append(f"{len(snapshot)} jobs in {_duration(self._clock() - self._started)}")
        total = _counts(Counter(s.state for s in snapshot))
        if total:
            text.append(": " + total)
        labels = _labels(s.job.launcher for s in snapshot)
        if len(set(labels.values())) > 1:
            per: dict[str, Counter[JobState]] = {label: Counter() for label in labels.values()}
            for s in snapshot:
                per[labels[s.job.launcher]][s.state] += 1
            text.append(" (" + "; ".join(f"{k}: {_counts(c)}" for k, c in per.items()) + ")")
        return text


def _counts(counts: Counter[JobState]) -> str:
    return ", ".join(f"{counts[st]} {st.value}" for st in STYLES if counts[st])


def _labels(launchers: Iterable[Any]) -> dict[Any, str]:
    """A short label per launcher: its name, with its destination when two share a name."""
    unique = list(dict.fromkeys(launchers))
    names = Counter(launcher.name for launcher in unique)
    labels: dict[Any, str] = {}
    for launcher in unique:
        label = launcher.name
        if names[label] > 1 and getattr(launcher, "label", None):
            label = f"{label}:{launcher.label}"
        elif names[label] > 1:
            where = getattr(getattr(launcher, "connector", None), "destination", None)
            label = f"{label}:{where}" if where is not None else label
        while label in labels.values():
            label += "'"
        labels[launcher] = label
    return labels


def _reason(failure: Failure | None) -> FailureReason:
    return failure.reason if failure is not None else FailureReason.FAILED


def _message(failure: Failure | None) -> str:
    """The last non-empty line of the failure's message (a traceback ends with the error)."""
    lines = [line for line in (failure.message if failure else "").splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def _duration(seconds: float) -> str:
    """``45s``, ``2m13s``, ``1h02m``."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"

