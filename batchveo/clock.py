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
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable

Clock = Callable[[], float]
"""Seconds since the epoch, as ``time.time``."""


def elapsed_clock() -> Clock:
    """Monotonic seconds that include time suspended, where the system counts it."""
    boottime = getattr(time, "CLOCK_BOOTTIME", None)
    if boottime is None:
        return time.monotonic
    return functools.partial(time.clock_gettime, boottime)


class RunClock:
    """``wall()`` once at creation, then advanced by ``monotonic()`` alone."""

    def __init__(self, wall: Clock = time.time, monotonic: Clock | None = None):
        self._anchor_s = wall()
        self._monotonic = monotonic or elapsed_clock()
        self._start_s = self._monotonic()

    def __call__(self) -> float:
        return self._anchor_s + (self._monotonic() - self._start_s)
