"""Watching a run: a JSON-lines log and the progress displays.

All of these are observers. The store calls ``on_transition`` synchronously
after every committed state change and the runner calls ``on_run_event`` for
run-level events, both on the event loop of a run that may push thousands of
jobs a second. So an observer here only updates a few counters or appends one
line to a file, and never raises: a full disk or a closed terminal must not
turn into a crashed overnight batch.

* ``JsonLog``: one JSON object per line, appended and flushed at once, so
  ``tail -f`` sees it and a crash loses nothing written before it.
* ``PlainProgress``: a throttled one-line summary for logs and cron mail (no
  control codes at all).
* ``LiveProgress``: rich bars for an interactive terminal, redrawn at most a
  few times a second whatever the event rate.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import unicodedata
from collections import Counter, deque
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
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

from batchveo.run.context import Observer
from batchveo.states import JobState
from batchveo.store import TransitionEvent

S = JobState
Scrub = Callable[[str], str]
Clock = Callable[[], float]

TODO_STATES = (S.PENDING, S.SUBMITTING, S.RUNNING, S.GENERATED)
"""Jobs in these states at the start of a run are the run's work ("total to do")."""
ERROR_STATES = frozenset({S.FAILED, S.UNCERTAIN, S.EXPIRED})
ENDED_STATES = frozenset({S.DONE, *ERROR_STATES})

JOB_EVENTS = frozenset(
    {"submitted", "generated", "done", "failed", "expired", "uncertain", "retry"}
)
"""Run events that repeat a transition the log already has: not logged twice."""


def _identity(text: str) -> str:
    return text


def iso_utc(ts: float) -> str:
    """``2026-11-21T03:04:05.123Z``: sortable, unambiguous, the same on every machine."""
    stamp = datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})


def one_line(text: str, limit: int = 120) -> str:
    """Text safe for a single log line: no control codes, no line breaks, bounded length.

    Error messages come from servers and commands; an escape sequence or a
    carriage return in one must not garble a terminal, a log file or cron mail.
    """
    cleaned = "".join(" " if unicodedata.category(ch) in _UNSAFE_CATEGORIES else ch for ch in text)
    cleaned = re.sub(r"\s+", " ", cleaned).strip()
    if len(cleaned) > limit:
        cleaned = cleaned[: max(0, limit - 3)].rstrip() + "..."
    return cleaned


def flatten_counts(per_batch: Mapping[str, Mapping[str, int]]) -> dict[str, int]:
    """``Store.counts()`` (per batch) to the ``{state: n}`` the displays start from."""
    out: dict[str, int] = {}
    for counts in per_batch.values():
        for state, n in counts.items():
            out[state] = out.get(state, 0) + n
    return out


def combine(*observers: Observer | None) -> Observer:
    """One run-event observer calling several (``Runner`` takes only one)."""
    chosen = [o for o in observers if o is not None]

    def fan_out(event: str, details: dict[str, Any]) -> None:
        for observer in chosen:
            observer(event, details)

    return fan_out


# -- the JSON-lines log ------------------------------------------------------------


class JsonLog:
    """Appends one JSON object per line for every transition and run-level event.

    The file is opened in append mode and flushed after each line: several runs
    share one log, ``tail -f`` follows it live, and a killed process loses
    nothing it wrote before. No fsync: surviving a power cut is the database's
    job, not the log's, and a sync per line would slow a big run down.

    ``scrub`` is applied to every line before it is written (the CLI passes one
    that masks the API key): this class never sees the key, but error texts
    come from elsewhere and a leak in a log file would be permanent.

    A write that fails (disk full, file removed) is remembered in ``error``
    and the run goes on.
    """

    def __init__(self, path: Path, *, scrub: Scrub = _identity, clock: Clock = time.time):
        self.path = Path(path)
        self.scrub = scrub
        self.clock = clock
        self.error: str | None = None
        """The first write error, if any (for the CLI to mention at the end)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: TextIO | None = self.path.open(
            "a", encoding="utf-8", errors="backslashreplace", buffering=1
        )

    def on_transition(self, e: TransitionEvent) -> None:
        record = e.as_dict()
        ts = record.pop("at")
        self._write({"at": iso_utc(ts), "ts": ts, "event": "transition", **record})

    def on_run_event(self, name: str, details: dict[str, Any]) -> None:
        if name in JOB_EVENTS:
            return
        ts = self.clock()
        record: dict[str, Any] = {"at": iso_utc(ts), "ts": ts, "event": name}
        for key, value in details.items():
            record[f"detail_{key}" if key in record else key] = value
        self._write(record)

    def _write(self, record: dict[str, Any]) -> None:
        if self._file is None:
            return
        try:
            line = self.scrub(json.dumps(record, ensure_ascii=False, default=str))
            self._file.write(line + "\n")
            self._file.flush()
        except Exception as e:  # never let the log stop the run
            if self.error is None:
                self.error = f"{self.path}: {e}"

    def close(self) -> None:
        if self._file is not None:
            try:
                self._file.close()
            except OSError as e:
                self.error = self.error or f"{self.path}: {e}"
            self._file = None

    def __enter__(self) -> JsonLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- what the progress displays count --------------------------------------------------


class Tally:
    """Counters of one run, fed by transitions and run events; cheap per event.

    ``total`` is the run's work: jobs in pending/submitting/running/generated
    at the start, plus jobs that re-enter pending from a finished state later
    (a ``retry`` from another terminal), minus pending jobs cancelled meanwhile.
    """

    def __init__(self, counts: Mapping[str, int] | None = None, *, keep_errors: int = 5):
        self.states: dict[str, int] = {}
        self.total = 0
        self.ended: Counter[str] = Counter()
        """Jobs that reached done/failed/uncertain/expired during this run."""
        self.pauses = 0
        self.pause_s = 0.0
        self.errors: deque[str] = deque(maxlen=keep_errors)
        self._rate_limited: set[str] = set()
        self.reset(counts or {})

    def reset(self, counts: Mapping[str, int]) -> None:
        self.states = {s.value: 0 for s in JobState}
        for state, n in counts.items():
            self.states[str(state)] = self.states.get(str(state), 0) + int(n)
        self.total = sum(self.states[s.value] for s in TODO_STATES)
        self.ended.clear()

    def transition(self, e: TransitionEvent) -> None:
        src, dst = e.from_state, e.to_state
        self.states[src] = max(0, self.states.get(src, 0) - 1)
        self.states[dst] = self.states.get(dst, 0) + 1
        if dst == S.PENDING and src != S.SUBMITTING:
            self.total += 1
        elif src == S.PENDING and dst == S.CANCELLED:
            self.total = max(0, self.total - 1)
        if dst in ENDED_STATES:
            self.ended[dst] += 1
        if dst in ERROR_STATES:
            self.note_error(e.job_id, e.error or e.error_kind or dst)

    def run_event(self, name: str, details: Mapping[str, Any]) -> None:
        job = str(details.get("job", "?"))
        if name == "rate_limited":
            self.pauses += 1
            self.pause_s += float(details.get("pause_s") or 0.0)
            self._rate_limited.add(job)
        elif name == "retry":
            # A 429 is counted as a pause; its requeue is not an error worth showing.
            if job in self._rate_limited:
                self._rate_limited.discard(job)
            else:
                self.note_error(job, str(details.get("error") or "retrying"))
        elif name == "manifest_loaded":  # --watch: new jobs arrive without a transition
            new = int(details.get("new") or 0)
            self.total += new
            self.states[S.PENDING] = self.states.get(S.PENDING, 0) + new
        elif name == "manifest_rejected":
            self.note_error(str(details.get("path", "?")), "manifest rejected")

    def note_error(self, job: str, error: str) -> None:
        self.errors.append(one_line(f"{job}: {error}", 200))

    @property
    def submitted(self) -> int:
        """Jobs of this run past the submit step (accepted, or finished at submit)."""
        waiting = self.states.get(S.PENDING, 0) + self.states.get(S.SUBMITTING, 0)
        return max(0, self.total - waiting)

    @property
    def generating(self) -> int:
        return self.states.get(S.RUNNING, 0)

    @property
    def downloaded(self) -> int:
        return self.ended[S.DONE]


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
            TextColumn("{task.description:>11}"),
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
