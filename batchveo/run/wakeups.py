"""How a stage waits: for something another part of the run signals, or for a due time.

Every wait of a run has a reason to end that someone signals (a job entered a state, a
slot was freed, a video was made, the stop level rose), or a due time on the run clock
(a poll, a retry, the pacer's next turn). There is no timeout poll: a poll every few
seconds "just in case" would make a lost wake-up invisible (the run still ends, only
later), which is exactly the bug it would hide.

Two shapes, for two kinds of thing waited for:

* ``Signal``: something that may have happened, for every waiter (new work to claim,
  a new operation to poll). A waiter takes a ``mark()`` *before* it looks, and its look
  may await the database: a ``fire()`` meanwhile makes the wait return at once.
* ``Waiters``: one thing for one waiter (a freed in-flight slot, a video to download).
  ``wake_one`` hands it to exactly one of them: an event would wake every waiter for
  what only one can take, and at 2,000 jobs and 64 workers that was most of a run's
  wake-ups. Its waiters look without awaiting anything, so there is nothing to mark.
"""

from __future__ import annotations

import asyncio
from collections import deque

from batchveo.clock import Alarm, Alarms


class Signal:
    """Something that may have happened; ``fire()`` wakes everyone waiting for it."""

    def __init__(self, clock: Alarms) -> None:
        self._clock = clock
        self._fired = 0
        self._waiting: set[asyncio.Future[None]] = set()

    def mark(self) -> int:
        """Take this before looking: ``wait(mark)`` then misses no ``fire()`` after it."""
        return self._fired

    def fire(self) -> None:
        self._fired += 1
        waiting, self._waiting = self._waiting, set()
        for fut in waiting:
            if not fut.done():
                fut.set_result(None)

    async def wait(self, mark: int, until_s: float | None = None) -> None:
        """Until a ``fire()`` after ``mark``, or the run clock reaches ``until_s``."""
        if self._fired != mark or (until_s is not None and until_s <= self._clock()):
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.add(fut)
        alarm: Alarm | None = None
        if until_s is not None:
            alarm = self._clock.call_at(until_s, lambda: _settle(fut))
        try:
            await fut
        finally:
            self._waiting.discard(fut)
            if alarm is not None:
                alarm.cancel()


class Waiters:
    """Workers waiting for one thing each: ``wake_one`` hands it to exactly one of them."""

    def __init__(self) -> None:
        self._waiting: deque[asyncio.Future[None]] = deque()

    def __len__(self) -> int:
        return len(self._waiting)

    async def wait(self) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.wake_one()  # woken as we were cancelled: hand it on
            raise
        finally:
            if not fut.done():
                fut.cancel()

    def wake_one(self) -> None:
        while self._waiting:
            fut = self._waiting.popleft()
            if not fut.done():
                fut.set_result(None)
                return

    def wake_all(self) -> None:
        while self._waiting:
            _settle(self._waiting.popleft())


def _settle(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
