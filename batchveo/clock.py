"""The one clock of a run: the wall time at its start, plus monotonic time elapsed since.

Every time a run writes (a job's next poll, a pending job's next attempt, when it was
submitted) and every time it compares against one reads this clock; the runner makes
it the store's clock for the run.

Why not the wall clock: it jumps (NTP stepping it, a VM resumed, a user correcting
it), and schedules kept on it jump with it. Set back an hour, nothing is due for an
hour; set back longer than the retention, paid videos are deleted before they are
fetched. Why not the monotonic clock alone: the database outlives the run, and its
times must still mean something to the next run, to ``show`` and to the report.

So a run reads the wall clock once and then counts monotonic seconds: whatever the
system clock does meanwhile, what the run writes and compares stays consistent. The
seconds go on through a suspend where the system counts them (``CLOCK_BOOTTIME`` on
Linux): ``time.monotonic`` stands still while a laptop sleeps, the retention does not.

A clock that moved *between* runs can still leave times an earlier run wrote lying
ahead; the runner brings any later than ``RunConfig.schedule_horizon_s`` (the furthest
ahead a run ever schedules) forward to its start.

The same clock wakes the run up: pacing, polls, retries, backoffs and the retention are
all times on it, and every wait of a run that ends at a time asks the clock's
``call_at`` (``Alarms``). A run clock rings through the event loop's timer
(``LoopAlarms``); a test passes a clock with alarms of its own and moves time by hand,
so nothing in it sleeps for real and nothing races the machine.

A run clock may also run fast (``RunClock(rate=10)``: ten seconds of the run per real
second), rung as fast by the loop's timer: a night compressed, every time of the run
(polls, pacing, backoffs, the retention) scaled alike. Real runs keep rate 1; the poll
schedule's benchmark (``bench/polls.py``) replays nights of minute-long generations so
against a simulator scaled the same way.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable
from typing import Protocol, runtime_checkable

Clock = Callable[[], float]
"""Seconds since the epoch, as ``time.time``."""


class Alarm(Protocol):
    """A pending ring of ``Alarms.call_at``; ``cancel`` it when the wait ends otherwise."""

    def cancel(self) -> None: ...


@runtime_checkable
class Alarms(Protocol):
    """A clock that can also ring at one of its own times: a run's waits end by it."""

    def __call__(self) -> float: ...

    def call_at(self, when_s: float, callback: Callable[[], object]) -> Alarm: ...


class LoopAlarms:
    """``clock``'s times, rung by the running loop's timer.

    The loop counts monotonic time, as a ``RunClock`` does, so a ring comes on time. With
    a clock that jumps (a test's, shifted by hand) a ring may come early or late by the
    jump, never lost: whoever waits reads the clock again when rung, and waits again if
    it is early.
    """

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._rate = float(getattr(clock, "rate", 1.0))
        """Seconds of ``clock`` per second of the loop's (a fast ``RunClock``'s rate)."""
        self._loop = asyncio.get_running_loop()  # made inside the run, never at import

    def __call__(self) -> float:
        return self._clock()

    def call_at(self, when_s: float, callback: Callable[[], object]) -> Alarm:
        delay_s = max(0.0, when_s - self._clock()) / self._rate
        return self._loop.call_later(delay_s, callback)


def alarms_for(clock: Clock) -> Alarms:
    """``clock`` itself if it rings (a test's), else the loop's timer on its times."""
    return clock if isinstance(clock, Alarms) else LoopAlarms(clock)


def elapsed_clock() -> Clock:
    """Monotonic seconds that include time suspended, where the system counts it."""
    boottime = getattr(time, "CLOCK_BOOTTIME", None)
    if boottime is None:
        return time.monotonic
    return functools.partial(time.clock_gettime, boottime)


class RunClock:
    """``wall()`` once at creation, then advanced by ``monotonic()`` alone, ``rate`` times
    as fast (1: real time)."""

    def __init__(
        self, wall: Clock = time.time, monotonic: Clock | None = None, *, rate: float = 1.0
    ):
        if not rate > 0:
            raise ValueError("a run clock's rate must be > 0")
        self.rate = rate
        self._anchor_s = wall()
        self._monotonic = monotonic or elapsed_clock()
        self._start_s = self._monotonic()

    def __call__(self) -> float:
        return self._anchor_s + (self._monotonic() - self._start_s) * self.rate
