"""The progress of a run on stderr: rich bars on a terminal, throttled lines elsewhere.

Both are observers, called on the event loop of a run that may push thousands of jobs
a second: an event only bumps the counters of a ``Tally``, and a line or a redraw
happens at most every so often whatever the event rate. They write to the stream or
console they are given, and never raise: a closed terminal must not crash a batch.

* ``PlainProgress``: a throttled one-line summary for logs and cron mail (no
  control codes at all).
* ``LiveProgress``: rich bars for an interactive terminal, redrawn at most a
  few times a second whatever the event rate.
* ``make_progress`` chooses between them (or none, with ``--quiet``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol, TextIO

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from batchveo.observe.tally import Tally
from batchveo.observe.text import one_line
from batchveo.states import JobState
from batchveo.store import TransitionEvent

S = JobState
Clock = Callable[[], float]


class ProgressDisplay(Protocol):
    """What the CLI drives: start with the counts, feed events, tick, stop."""

    tally: Tally

    def start(self, counts: Mapping[str, int]) -> None: ...

    def on_transition(self, e: TransitionEvent) -> None: ...

    def on_run_event(self, name: str, details: dict[str, Any]) -> None: ...

    def tick(self) -> None: ...

    def stop(self) -> None: ...

    def close(self) -> None: ...


# -- plain one-line summaries -------------------------------------------------------------


class PlainProgress:
    """A one-line summary at most every ``interval_s``, for log files and cron mail.

    Lines are written only when an event arrives or ``tick()`` is called and
    the interval has passed, plus one at ``start`` and one at ``close``; never
    a control code, so a log stays greppable and a mail stays readable.
    """

    def __init__(
        self,
        stream: TextIO,
        interval_s: float = 60.0,
        clock: Clock = time.monotonic,
        *,
        wall_clock: Clock = time.time,
    ):
        self.stream = stream
        self.interval_s = interval_s
        self.clock = clock
        self.wall_clock = wall_clock
        self.tally = Tally()
        self._last_line_at: float | None = None
        self._closed = False

    def start(self, counts: Mapping[str, int]) -> None:
        self.tally.reset(counts)
        self._print()

    def on_transition(self, e: TransitionEvent) -> None:
        self.tally.transition(e)
        self.tick()

    def on_run_event(self, name: str, details: dict[str, Any]) -> None:
        self.tally.run_event(name, details)
        self.tick()

    def tick(self) -> None:
        """Print a line if the interval has passed since the last one."""
        if self._closed:
            return
        last = self._last_line_at
        if last is None or self.clock() - last >= self.interval_s:
            self._print()

    def close(self) -> None:
        """Print the final line (once)."""
        if not self._closed:
            self._print()
            self._closed = True

    stop = close

    def line(self) -> str:
        t = self.tally
        stamp = datetime.fromtimestamp(self.wall_clock(), tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        text = (
            f"{stamp} submitted {t.submitted}/{t.total} generating {t.generating}"
            f" downloaded {t.downloaded}/{t.total} failed {t.ended[S.FAILED]}"
            f" expired {t.ended[S.EXPIRED]} uncertain {t.ended[S.UNCERTAIN]}"
            f" | 429 pauses {t.pauses} ({t.pause_s:.0f}s)"
        )
        if t.errors:
            text += f" | last error: {one_line(t.errors[-1], 120)}"
        return text

    def _print(self) -> None:
        self._last_line_at = self.clock()
        line = self.line() + "\n"
        try:
            try:
                self.stream.write(line)
            except UnicodeEncodeError:  # an ASCII-only stream (LANG=C under cron)
                self.stream.write(line.encode("ascii", "replace").decode("ascii"))
            self.stream.flush()
        except (OSError, ValueError):
            pass  # the stream is gone (closed pipe): the run matters more than its progress


# -- rich bars for a terminal ---------------------------------------------------------------


class _RateColumn(ProgressColumn):
    """Jobs per minute over the speed window (only for bars that measure a flow)."""

    def render(self, task: Task) -> Text:
        if not task.fields.get("rated") or not task.speed:
            return Text("")
        per_min = task.speed * 60
        return Text(f"{per_min:.{1 if per_min < 10 else 0}f}/min", style="progress.data.speed")


class _EtaColumn(TimeRemainingColumn):
    def render(self, task: Task) -> Text:
        return super().render(task) if task.fields.get("rated") else Text("")


class _View:
    """Built when rich refreshes (a few times a second), never per event."""

    def __init__(self, owner: LiveProgress):
        self._owner = owner

    def __rich__(self) -> RenderableType:
        try:
            return self._owner.renderable()
        except Exception as e:  # a display bug must not kill rich's refresh thread
            return Text(f"progress display error: {one_line(str(e))}")


class LiveProgress:
    """Bars per stage (submitted, generating, downloaded), 429 pauses, recent errors.

    Events only bump counters in a ``Tally``; the bars are brought up to date
    when rich redraws (``refresh_per_second``), so the cost per event does not
    depend on the display.
    """

    def __init__(self, console: Console, *, refresh_per_second: float = 8.0, show_errors: int = 3):
        self.console = console
        self.tally = Tally()
        self.show_errors = show_errors
        self._progress = Progress(
            TextColumn("{task.description:>11}", markup=False),
            BarColumn(),
            MofNCompleteColumn(),
            _RateColumn(),
            _EtaColumn(),
            console=console,
            auto_refresh=False,
            speed_estimate_period=600.0,
        )
        self._tasks: dict[str, TaskID] = {
            "submitted": self._progress.add_task("submitted", total=0, rated=True),
            "generating": self._progress.add_task("generating", total=0, rated=False),
            "downloaded": self._progress.add_task("downloaded", total=0, rated=True),
        }
        self._live = Live(
            _View(self),
            console=console,
            refresh_per_second=refresh_per_second,
            transient=False,
            # Warnings on stderr go above the bars; stdout is left alone (it may be data).
            redirect_stdout=False,
            redirect_stderr=True,
        )
        self._started = False

    def start(self, counts: Mapping[str, int]) -> None:
        self.tally.reset(counts)
        if not self._started:
            self._started = True
            self._live.start(refresh=True)

    def on_transition(self, e: TransitionEvent) -> None:
        self.tally.transition(e)

    def on_run_event(self, name: str, details: dict[str, Any]) -> None:
        self.tally.run_event(name, details)

    def tick(self) -> None:
        """Nothing to do: rich redraws on its own thread."""

    def stop(self) -> None:
        if self._started:
            self._started = False
            self._live.stop()  # draws the final state once more

    close = stop

    def renderable(self) -> RenderableType:
        """The current view (called by rich's refresh, or directly in tests)."""
        t = self.tally
        values = {"submitted": t.submitted, "generating": t.generating, "downloaded": t.downloaded}
        for name, task_id in self._tasks.items():
            self._progress.update(task_id, total=t.total, completed=values[name])
        status = Text(
            f"failed {t.ended[S.FAILED]}  expired {t.ended[S.EXPIRED]}"
            f"  uncertain {t.ended[S.UNCERTAIN]}  |  429 pauses {t.pauses} ({t.pause_s:.0f}s)"
        )
        errors = list(t.errors)[-self.show_errors :] if self.show_errors else []
        lines = [Text(f"  {err}", style="red", no_wrap=True, overflow="ellipsis") for err in errors]
        return Group(self._progress, status, *lines)


# -- choosing a display ---------------------------------------------------------------------


def make_progress(
    stream_is_tty: bool,
    quiet: bool,
    stream: TextIO,
    console: Console,
    *,
    interval_s: float = 60.0,
) -> ProgressDisplay | None:
    """None when quiet; live bars on a terminal; plain throttled lines otherwise."""
    if quiet:
        return None
    if stream_is_tty:
        return LiveProgress(console)
    return PlainProgress(stream, interval_s)


async def keep_ticking(display: ProgressDisplay, every_s: float = 5.0) -> None:
    """Call ``display.tick()`` until cancelled, so a quiet stretch still gets its line."""
    while True:
        await asyncio.sleep(every_s)
        display.tick()
